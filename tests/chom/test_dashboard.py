import pytest
from django.contrib.auth import get_user_model

from chom.operations import operation_create


@pytest.fixture
def staff_client(client, db):
    user = get_user_model().objects.create_user("admin", password="pw-for-tests-only", is_staff=True)
    client.force_login(user)
    return client


def test_it_sends_anonymous_visitors_to_the_login_page(client, db):
    response = client.get("/")
    assert response.status_code == 302
    assert "/login/" in response["Location"]


def test_it_logs_in_staff_with_a_password(client, db):
    get_user_model().objects.create_user("admin", password="pw-for-tests-only", is_staff=True)
    response = client.post("/login/", {"username": "admin", "password": "pw-for-tests-only"})
    assert response.status_code == 302
    assert client.get("/").status_code == 200


def test_it_keeps_non_staff_users_out(client, db):
    user = get_user_model().objects.create_user("customer", password="pw-for-tests-only")
    client.force_login(user)
    assert client.get("/operations/").status_code == 302


def test_it_lists_operations_and_shows_one_with_its_log(staff_client):
    op = operation_create(kind="system.selfcheck")
    listing = staff_client.get("/operations/")
    assert listing.status_code == 200
    assert b"system.selfcheck" in listing.content
    detail = staff_client.get(f"/operations/{op.id}/")
    assert detail.status_code == 200
    assert b"queued system.selfcheck" in detail.content
    assert staff_client.get("/operations/?status=failed").status_code == 200
