from rest_framework.throttling import SimpleRateThrottle

from chom.tiers import STAFF_API_RATE_PER_MINUTE


class TokenRateThrottle(SimpleRateThrottle):
    """Per-token request budget per minute, from the tenant's tier (staff: a fixed budget)."""

    scope = "token"

    def get_rate(self) -> str:
        return "1000/min"  # replaced per request in allow_request

    def allow_request(self, request, view) -> bool:
        token = request.auth
        if token is None:
            return True
        per_minute = (
            STAFF_API_RATE_PER_MINUTE if token.is_staff_token else token.tenant.limits.api_rate_per_minute
        )
        self.num_requests, self.duration = per_minute, 60
        return super().allow_request(request, view)

    def get_cache_key(self, request, view) -> str | None:
        return f"throttle:token:{request.auth.pk}" if request.auth else None
