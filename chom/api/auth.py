from rest_framework import authentication, exceptions

from chom.models import Membership
from chom.services import token_authenticate


class BearerTokenAuthentication(authentication.BaseAuthentication):
    """`Authorization: Bearer chom_<prefix>_<secret>`. Sets request.auth to the ApiToken and
    token.membership to the caller's membership in the token's tenant (None for staff tokens)."""

    keyword = "Bearer"

    def authenticate(self, request):
        header = request.META.get("HTTP_AUTHORIZATION", "")
        if not header:
            return None
        keyword, _, raw = header.partition(" ")
        # A token is printable ASCII: anything else is malformed, never an error of ours.
        if keyword != self.keyword or not raw.strip() or not raw.isascii() or not raw.isprintable():
            raise exceptions.AuthenticationFailed("Authorization header must be 'Bearer <token>'.")
        token = token_authenticate(raw=raw.strip())
        if token is None:
            raise exceptions.AuthenticationFailed("Invalid, expired or revoked token.")
        if token.is_staff_token:
            if not token.user.is_staff:
                raise exceptions.AuthenticationFailed("Invalid, expired or revoked token.")
            token.membership = None
        else:
            token.membership = Membership.objects.filter(user=token.user, tenant=token.tenant).first()
            if token.membership is None:
                raise exceptions.AuthenticationFailed("Invalid, expired or revoked token.")
        return token.user, token

    def authenticate_header(self, request) -> str:
        return f'{self.keyword} realm="api"'


from chom.api import schema  # noqa: E402, F401 - registers the OpenAPI description of this scheme
