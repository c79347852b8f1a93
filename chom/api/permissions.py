from rest_framework import permissions

SAFE = permissions.SAFE_METHODS


def is_staff_request(request) -> bool:
    return request.auth is not None and request.auth.is_staff_token


class TokenScopePermission(permissions.BasePermission):
    """Every API call needs a token; writes need a write-scoped token and a role that may write."""

    message = "This token or role may only read."

    def has_permission(self, request, view) -> bool:
        token = request.auth
        if token is None:
            return False
        if request.method in SAFE:
            return True
        if token.scope != token.Scope.WRITE:
            return False
        return token.is_staff_token or token.membership.can_write


class StaffOnly(permissions.BasePermission):
    message = "This endpoint is for platform staff tokens."

    def has_permission(self, request, view) -> bool:
        return is_staff_request(request)


class TenantOnly(permissions.BasePermission):
    message = "This endpoint needs a tenant token."

    def has_permission(self, request, view) -> bool:
        return request.auth is not None and not request.auth.is_staff_token
