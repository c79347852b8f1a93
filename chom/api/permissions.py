"""Who may call an API view: one permission, the default of every view, that composes the
credential, the audience, the token's scope and the caller's role. Views never set
`permission_classes`; they describe themselves and this class decides:

- `audience`: `ANY` (tenant and staff tokens; the default), `TENANT` or `STAFF` tokens only;
- `manager_methods`: methods only a tenant's owners and admins (and staff) may call;
- `sensitive_methods`: methods that hand out secrets (a backup's dump and `.env`); they need a
  write-scoped token and an owner/admin role even when they are GETs.

Every other unsafe method needs a write-scoped token and a role that may write (not `viewer`).
A test (tests/chom/test_authorization_matrix.py) checks every route against a table of rules,
and that no API view replaces this permission.
"""

from rest_framework import permissions

from chom.models import Membership

SAFE = permissions.SAFE_METHODS
ANY, TENANT, STAFF = "any", "tenant", "staff"
MANAGERS = (Membership.Role.OWNER, Membership.Role.ADMIN)


def is_staff_request(request) -> bool:
    return request.auth is not None and request.auth.is_staff_token


class ApiAccess(permissions.BasePermission):
    message = "This token or role may not do this."

    def has_permission(self, request, view) -> bool:
        token = request.auth
        if token is None:
            return False  # DRF answers 401: the view needs a credential
        return self._audience_ok(token, view) and self._method_ok(token, request.method, view)

    def _audience_ok(self, token, view) -> bool:
        audience = getattr(view, "audience", ANY)
        if audience == STAFF and not token.is_staff_token:
            self.message = "This endpoint is for platform staff tokens."
            return False
        if audience == TENANT and token.is_staff_token:
            self.message = "This endpoint needs a tenant token."
            return False
        return True

    def _method_ok(self, token, method: str, view) -> bool:
        sensitive = method in getattr(view, "sensitive_methods", ())
        manager = sensitive or method in getattr(view, "manager_methods", ())
        if method in SAFE and not sensitive:
            return True
        if token.scope != token.Scope.WRITE:
            self.message = "This token may only read."
            return False
        if token.is_staff_token:
            return True
        role = token.membership.role
        if manager and role not in MANAGERS:
            self.message = "Only the tenant's owners and admins may do this."
            return False
        if not token.membership.can_write:
            self.message = "This role may only read."
            return False
        return True
