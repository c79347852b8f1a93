import os
import subprocess
import sys

from django.core.management import call_command

from chom.models import ApiToken, Membership, Tenant
from chom.services import token_authenticate
from tests.support.processes import ROOT

PRODUCTION_ENV = {
    "DJANGO_SETTINGS_MODULE": "chom.settings.production",
    "SECRET_KEY": "k3j4h5g6f7d8s9a0q1w2e3r4t5y6u7i8o9p0z1x2c3v4b5n6m7-_lkjhgfdsa",
    "DATABASE_URL": "postgres://chom@127.0.0.1:5432/chom",
    "REDIS_URL": "redis://127.0.0.1:6379/0",
    "ALLOWED_HOSTS": "chom.example.com",
    "FIELD_ENCRYPTION_KEY": "7Mlf4o0a3jdjZ2-6xqq5cC2m2S0lyq6R9kKo1QqjDHk=",
}


def _manage(env: dict, *args) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if k not in PRODUCTION_ENV and not k.startswith("PYTEST_")}
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=base | env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_it_passes_the_deploy_check_with_production_settings():
    result = _manage(PRODUCTION_ENV, "check", "--deploy", "--fail-level", "WARNING")
    assert result.returncode == 0, result.stderr


def test_it_refuses_to_start_production_without_its_essentials():
    for missing in ("SECRET_KEY", "DATABASE_URL", "REDIS_URL", "ALLOWED_HOSTS", "FIELD_ENCRYPTION_KEY"):
        env = {k: v for k, v in PRODUCTION_ENV.items() if k != missing}
        result = _manage(env, "check")
        assert result.returncode != 0
        assert missing in result.stderr


def test_it_reads_secrets_from_files(tmp_path):
    secret = tmp_path / "secret"
    secret.write_text("s" * 64 + "\n")
    env = {k: v for k, v in PRODUCTION_ENV.items() if k != "SECRET_KEY"} | {"SECRET_KEY_FILE": str(secret)}
    result = _manage(env, "shell", "-c", "from django.conf import settings; print(len(settings.SECRET_KEY))")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "64"


def test_it_creates_a_tenant_and_prints_the_token_last(db, capsys):
    call_command("create_tenant", "initech", "--tier", "enterprise", "--owner-email", "peter@initech.test")
    token = capsys.readouterr().out.strip().splitlines()[-1]
    api_token = token_authenticate(raw=token)
    assert api_token.tenant == Tenant.objects.get(slug="initech", tier="enterprise")
    assert Membership.objects.get(tenant__slug="initech").role == "owner"


def test_it_prints_the_heading_before_the_token_on_one_stream(db, capsys):
    call_command("create_tenant", "hooli", "--owner-email", "gavin@hooli.test")
    captured = capsys.readouterr()
    lines = captured.out.strip().splitlines()
    assert len(lines) == 2 and lines[0].startswith("tenant hooli (starter) created")
    assert token_authenticate(raw=lines[1]).tenant.slug == "hooli"
    assert captured.err == ""


def test_it_rejects_a_bad_slug_and_a_duplicate(db):
    import pytest
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="slug"):
        call_command("create_tenant", "Bad Slug;rm", "--owner-email", "x@y.test")
    call_command("create_tenant", "dup", "--owner-email", "x@y.test")
    with pytest.raises(CommandError, match="already exists"):
        call_command("create_tenant", "dup", "--owner-email", "x@y.test")


def test_it_creates_a_staff_token(db, capsys):
    call_command("create_staff_token", "ops@chom.test")
    token = token_authenticate(raw=capsys.readouterr().out.strip().splitlines()[-1])
    assert token.is_staff_token and token.user.is_staff
    assert ApiToken.objects.filter(tenant=None).count() == 1


def test_it_adds_a_member_with_a_role_and_refuses_an_unknown_tenant(db, capsys):
    import pytest
    from django.core.management.base import CommandError

    call_command("create_tenant", "umbrella", "--owner-email", "o@umbrella.test")
    call_command("add_member", "umbrella", "ada@umbrella.test", "--role", "viewer")
    assert Membership.objects.get(user__email="ada@umbrella.test").role == "viewer"
    assert "ada@umbrella.test is now viewer of umbrella" in capsys.readouterr().out
    with pytest.raises(CommandError, match="no tenant"):
        call_command("add_member", "nope", "x@y.test")
