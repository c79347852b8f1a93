from drf_spectacular.extensions import OpenApiAuthenticationExtension


class BearerTokenScheme(OpenApiAuthenticationExtension):
    target_class = "chom.api.auth.BearerTokenAuthentication"
    name = "bearerAuth"

    def get_security_definition(self, auto_schema):
        return {"type": "http", "scheme": "bearer", "description": "chom_<prefix>_<secret> API token"}


# Every API answer that is not a success has one shape (chom.api.errors.error_body).
ERROR_COMPONENT = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message", "fields"],
            "properties": {
                "code": {"type": "string"},
                "message": {"type": "string"},
                "fields": {"type": "object"},
            },
        }
    },
}
ERROR_STATUSES = {
    "400": "Invalid input (the fields say which)",
    "401": "No valid credential",
    "403": "The token's scope, the caller's role or the audience does not allow this",
    "404": "No such object for this caller (another tenant's object is a 404 too)",
    "405": "Method not allowed",
    "409": "Refused in the object's current state",
    "415": "Send JSON",
    "429": "Rate limited (per token, by tier), or too many operations pending (per tenant, by tier)",
    "502": "An upstream service (e.g. Stripe) refused the call",
    "503": "A service CHOM needs is not configured or not reachable",
}


def add_error_responses(result, generator, request, public):
    """drf-spectacular post-processing hook: document the error shape for every status an
    operation can answer with, so clients and fuzzers know all of them."""
    result.setdefault("components", {}).setdefault("schemas", {})["Error"] = ERROR_COMPONENT
    ref = {"$ref": "#/components/schemas/Error"}
    for operations in result.get("paths", {}).values():
        for operation in operations.values():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            for status, description in ERROR_STATUSES.items():
                operation["responses"].setdefault(
                    status, {"description": description, "content": {"application/json": {"schema": ref}}}
                )
    return result
