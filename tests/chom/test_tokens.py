import hashlib
from datetime import timedelta

from django.utils import timezone

from chom.models import ApiToken
from chom.services import token_authenticate


def test_it_stores_only_a_hash_of_the_secret(alice):
    token = ApiToken.objects.get(user=alice.user)
    secret = alice.token.split("_", 2)[2]
    assert token.secret_hash == hashlib.sha256(secret.encode()).hexdigest()
    assert secret not in token.secret_hash
    assert not ApiToken.objects.filter(secret_hash__contains=secret).exists()


def test_it_shows_the_full_token_only_once(alice):
    created = alice.client().post("/api/v1/tokens", {"name": "ci", "scope": "read"}, format="json")
    assert created.status_code == 201
    plaintext = created.json()["token"]
    assert plaintext.startswith(f"chom_{created.json()['prefix']}_")
    listed = alice.client().get("/api/v1/tokens").json()["results"]
    assert {t["prefix"] for t in listed} >= {created.json()["prefix"]}
    assert all("token" not in t for t in listed)
    assert plaintext not in str(listed)


def test_it_authenticates_with_a_created_token_and_records_last_use(alice):
    created = alice.client().post("/api/v1/tokens", {"name": "ci"}, format="json").json()
    response = alice.client()
    response.credentials(HTTP_AUTHORIZATION=f"Bearer {created['token']}")
    assert response.get("/api/v1/tenant").status_code == 200
    assert ApiToken.objects.get(prefix=created["prefix"]).last_used_at is not None


def test_it_rejects_revoked_tokens(alice, bob):
    token_id = ApiToken.objects.get(user=bob.user).id
    assert alice.client().delete(f"/api/v1/tokens/{token_id}").status_code == 204
    response = bob.client().get("/api/v1/tenant")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthenticated"


def test_it_rejects_expired_tokens(alice):
    ApiToken.objects.filter(user=alice.user).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert alice.client().get("/api/v1/tenant").status_code == 401


def test_it_rejects_a_token_with_the_right_prefix_but_wrong_secret(alice):
    prefix = alice.token.split("_")[1]
    assert token_authenticate(raw=f"chom_{prefix}_wrong") is None
    assert token_authenticate(raw="not-a-token") is None


def test_it_creates_tokens_that_expire(alice):
    body = (
        alice.client().post("/api/v1/tokens", {"name": "short", "expires_in_days": 1}, format="json").json()
    )
    token = ApiToken.objects.get(prefix=body["prefix"])
    assert timedelta(hours=23) < token.expires_at - timezone.now() <= timedelta(days=1)


def test_it_lets_a_member_revoke_only_their_own_tokens(alice, bob):
    alice_token = ApiToken.objects.filter(user=alice.user).first()
    response = bob.client().delete(f"/api/v1/tokens/{alice_token.id}")
    assert response.status_code == 403
    bob_token = ApiToken.objects.get(user=bob.user)
    assert bob.client().delete(f"/api/v1/tokens/{bob_token.id}").status_code == 204
