"""POST /webhooks/git/<hook id>: a git host's push deploys the site. GitHub (`X-Hub-Signature-256`),
GitLab (`X-Gitlab-Token`) and Gitea/Forgejo (`X-Gitea-Signature`, `X-Forgejo-Signature`) are told
apart by their headers. Verify, keep only pushes to the site's branch, de-duplicate by delivery
id, queue (or join) a deploy and answer at once. Mounted by chom/urls.py under /webhooks/git/."""

import hashlib
import hmac
import json
from dataclasses import dataclass
from urllib.parse import parse_qs

from django.http import JsonResponse
from django.urls import path
from django.utils.decorators import method_decorator
from django.views import View
from django.views.decorators.csrf import csrf_exempt

from chom.api.errors import RETRY_AFTER_SECONDS, error_body
from chom.api.serializers import OperationRefSerializer
from chom.errors import ApplicationError
from chom.http import client_ip
from sites import services
from sites.models import SiteWebhook

MAX_BODY_BYTES = 1024 * 1024  # GitHub's push payloads carry at most 20 commits: far below this
NULL_COMMIT = "0" * 40  # the "after" of a push that deleted the branch


@dataclass(frozen=True)
class Delivery:
    provider: str
    event: str  # "push" for a push, whatever the host calls it; otherwise the host's own name
    delivery_id: str


def _hmac_hex(secret: str, body: bytes) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def _same(supplied: str, expected: str) -> bool:
    return hmac.compare_digest(supplied.strip().encode(), expected.encode())


def delivery_verify(headers, body: bytes, secret: str) -> Delivery | None:
    """The delivery, if its signature (GitLab: its token) proves the sender holds SECRET; else None.
    Gitea also sends GitHub's headers, so its own are looked at first."""
    for host in ("Forgejo", "Gitea"):
        signature = headers.get(f"X-{host}-Signature")
        if signature is not None:
            if not _same(signature.lower(), _hmac_hex(secret, body)):
                return None
            return Delivery(
                host.lower(), headers.get(f"X-{host}-Event", ""), headers.get(f"X-{host}-Delivery", "")
            )
    signature = headers.get("X-Hub-Signature-256")
    if signature is not None:
        if not _same(signature, f"sha256={_hmac_hex(secret, body)}"):
            return None
        return Delivery("github", headers.get("X-GitHub-Event", ""), headers.get("X-GitHub-Delivery", ""))
    token = headers.get("X-Gitlab-Token")
    if token is not None:
        if not _same(token, secret):
            return None
        event = headers.get("X-Gitlab-Event", "")
        delivery_id = headers.get("X-Gitlab-Event-UUID") or headers.get("X-Request-Id", "")
        return Delivery("gitlab", "push" if event == "Push Hook" else event, delivery_id)
    return None


def _payload(request, body: bytes) -> dict | None:
    """The event's JSON; GitHub may send it form-encoded as `payload=...`."""
    try:
        if request.content_type == "application/x-www-form-urlencoded":
            body = parse_qs(body.decode()).get("payload", [""])[0].encode()
        payload = json.loads(body)
    except (UnicodeDecodeError, ValueError):
        return None
    return payload if isinstance(payload, dict) else None


def _error(status: int, code: str, message: str, headers=None) -> JsonResponse:
    return JsonResponse(error_body(code, message), status=status, headers=headers)


def _ignored(reason: str) -> JsonResponse:
    return JsonResponse({"ignored": reason}, status=200)


@method_decorator(csrf_exempt, name="dispatch")
class GitWebhookView(View):
    def post(self, request, token: str):
        body = request.read(MAX_BODY_BYTES + 1)  # not request.body: its cap is Django's, not ours
        if len(body) > MAX_BODY_BYTES:
            return _error(413, "too_large", f"A webhook delivery carries at most {MAX_BODY_BYTES} bytes.")
        hook = SiteWebhook.objects.select_related("site__tenant").filter(hook_id=token).first()
        # An unknown hook answers as a wrong signature does: the URL tells nothing about what exists.
        delivery = delivery_verify(request.headers, body, hook.secret) if hook else None
        if delivery is None:
            return _error(401, "invalid_signature", "The signature does not match this hook's secret.")
        if delivery.event.lower() != "push":
            return _ignored(f"{delivery.event or 'unnamed'} event: only pushes deploy")
        payload = _payload(request, body)
        if payload is None:
            return _error(400, "invalid_input", "The delivery is not a JSON object.")
        return self._push(request, hook, delivery, payload, body)

    def _push(self, request, hook: SiteWebhook, delivery: Delivery, payload: dict, body: bytes):
        wanted = f"refs/heads/{hook.site.repository_branch or 'main'}"
        ref, commit = str(payload.get("ref", "")), str(payload.get("after", ""))[:80]
        if ref != wanted:
            return _ignored(f"a push to {ref[:200] or 'no ref'}; this site deploys {wanted}")
        if payload.get("deleted") is True or commit == NULL_COMMIT:
            return _ignored(f"{wanted} was deleted")
        # No delivery id (an old GitLab): the same body is the same push.
        delivery_id = delivery.delivery_id[:100] or f"sha256:{hashlib.sha256(body).hexdigest()}"
        try:
            outcome = services.site_push_receive(
                hook=hook,
                delivery_id=delivery_id,
                provider=delivery.provider,
                commit=commit,
                source_ip=client_ip(request),
            )
        except ApplicationError as exc:
            # Not the API: DRF's handler is not there to answer the error shape, and a git host
            # is no dashboard user to redirect (what chom's middleware does for non-JSON clients).
            headers = {"Retry-After": str(RETRY_AFTER_SECONDS)} if exc.status == 429 else None
            return JsonResponse(
                error_body(exc.code, exc.message, exc.fields), status=exc.status, headers=headers
            )
        if outcome.operation is None:
            return _ignored("this delivery was handled before")
        answer = {
            "operation": OperationRefSerializer(outcome.operation).data,
            "duplicate": outcome.duplicate,
            "collapsed": outcome.collapsed,
        }
        return JsonResponse(answer, status=200 if outcome.duplicate else 202)


urlpatterns = [path("<slug:token>", GitWebhookView.as_view(), name="site-git-webhook")]
