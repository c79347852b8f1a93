"""Backup runs against a real S3 HTTP endpoint (moto_server) with a scripted VPS."""

import gzip
import json
import os
from datetime import timedelta

import pytest
from django.test import override_settings
from django.utils import timezone

from backups import inspect, restore, services, storage
from backups.models import Backup
from chom.models import Operation
from chom.operations import operation_execute
from devstack.s3 import BUCKET
from fleet.models import Vps
from sites.models import Site
from tests.backups.fixtures import BreakableProxy, ScriptedTransport, gz, keys, settings_for, tar_gz

DUMP = """-- MariaDB dump
CREATE TABLE `posts` (
  `id` int(11) NOT NULL
);
INSERT INTO `posts` VALUES (1,'a),(b'),(2,'it\\'s (x),(y)'),(3,NULL);
INSERT INTO `posts` VALUES (4,'d');
CREATE TABLE `empty` (
  `id` int(11) NOT NULL
);
CREATE TABLE `we``ird` (
  `id` int(11) NOT NULL
);
INSERT INTO `we``ird` VALUES (1),(2);
CREATE TABLE `rows_per_line` (
  `id` int(11) NOT NULL
);
INSERT INTO `rows_per_line` VALUES
(1,'x);'),
(2,'(y'),
(3,'z');
"""
FILES = {
    "shared/uploads/a.txt": b"hello",
    "releases/20240101T000000-abc123/public/index.php": b"<?php echo 1;",
    "releases/20240101T000000-abc123/.chom-release.json": b"{}",
}


@pytest.fixture
def site(alice):
    vps = Vps.objects.create(name="web-1", provider="manual", ip_address="192.0.2.10", status="active")
    return Site.objects.create(
        tenant=alice.tenant,
        vps=vps,
        domain="shop.example.com",
        type="php",
        status="active",
        unix_user="site1",
        db_name="site1",
        db_user="site1",
        current_release="20240101T000000-abc123",
    )


def _transport(**kwargs) -> ScriptedTransport:
    return ScriptedTransport(dump=gz(DUMP), archive=tar_gz(FILES), **kwargs)


def test_it_streams_both_artefacts_verifies_them_in_s3_and_writes_the_manifest_last(s3, site):
    backup = Backup.objects.create(site=site)
    transport = _transport()
    services.backup_perform(backup=backup, transport=transport)
    backup.refresh_from_db()
    assert backup.status == "succeeded", backup.error
    assert set(backup.artefacts) == {"database", "files", "files_index"}
    for artefact in backup.artefacts.values():
        assert storage.measure(artefact["key"]).sha256 == artefact["sha256"]
        assert s3.head_object(Bucket=BUCKET, Key=artefact["key"])["ServerSideEncryption"] == "AES256"
    manifest = json.loads(s3.get_object(Bucket=BUCKET, Key=backup.manifest_key)["Body"].read())
    assert manifest["database"]["tables"] == {"empty": 0, "posts": 4, "rows_per_line": 3, "we`ird": 2}
    assert manifest["files"]["count"] == 3 and manifest["release"] == "20240101T000000-abc123"
    assert manifest["chom_version"] and manifest["artefacts"] == backup.artefacts
    assert backup.size_bytes == sum(a["size"] for a in backup.artefacts.values()) + len(
        s3.get_object(Bucket=BUCKET, Key=backup.manifest_key)["Body"].read()
    )
    index = inspect.index_loads(storage.get_bytes(backup.artefacts["files_index"]["key"]))
    assert index["shared/uploads/a.txt"] == "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
    dump_cmd = next(c for c in transport.commands if "mariadb-dump" in c)
    assert "--single-transaction" in dump_cmd and dump_cmd.endswith(" site1")
    tar_cmd = next(c for c in transport.commands if "tar --create" in c)
    assert tar_cmd.endswith("-- shared releases/20240101T000000-abc123")


def test_it_fails_with_the_reason_and_leaves_no_object_when_the_dump_fails(s3, site):
    backup = Backup.objects.create(site=site)
    with pytest.raises(services.BackupFailed, match="Unknown database"):
        services.backup_perform(backup=backup, transport=_transport(exit_codes={"mariadb-dump": 2}))
    backup.refresh_from_db()
    assert backup.status == "failed" and "mariadb-dump | gzip exited 2" in backup.error
    assert keys(s3) == [] and s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads", []) == []


def test_it_tolerates_tar_exit_1_for_files_changed_while_read(s3, site):
    backup = Backup.objects.create(site=site, kind="files")
    services.backup_perform(backup=backup, transport=_transport(exit_codes={"tar --create": 1}))
    assert Backup.objects.get(pk=backup.pk).status == "succeeded"


def test_it_fails_and_nothing_looks_complete_when_s3_goes_away_mid_upload(moto_s3, s3, site):
    proxy = BreakableProxy(int(moto_s3["S3_ENDPOINT_URL"].rsplit(":", 1)[1]))
    try:
        proxied = settings_for(moto_s3, S3_ENDPOINT_URL=f"http://127.0.0.1:{proxy.port}", S3_READ_TIMEOUT=3.0)
        big = gzip.compress(os.urandom(12 * 1024 * 1024), compresslevel=1)  # more than one part
        transport = ScriptedTransport(dump=big, archive=tar_gz(FILES))
        transport.fail_after, transport.failpoint = 9 * 1024 * 1024, proxy.go_down
        backup = Backup.objects.create(site=site)
        with override_settings(**proxied), pytest.raises(services.BackupFailed) as failure:
            services.backup_perform(backup=backup, transport=transport)
        backup.refresh_from_db()
        assert backup.status == "failed" and "S3" in backup.error and "failed" in backup.error
        assert failure.value.transient
        # Seen directly on the server: no manifest, no completed object.
        assert keys(s3) == []
        leftover = s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads", [])
        # The abort could not reach S3 either; the janitor aborts what is left.
        storage.abort_incomplete_uploads()
        assert s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads", []) == []
        assert len(leftover) <= 1
    finally:
        proxy.close()


def test_it_marks_the_backup_failed_when_the_operation_dies(s3, site):
    backup, op = services.backup_request(site=site)
    with override_settings(FLEET_SSH_CONNECT_TIMEOUT=0.5):
        Vps.objects.filter(pk=site.vps_id).update(ip_address="127.0.0.1", ssh_port=1)
        operation_execute(operation_id=op.id)
    backup.refresh_from_db()
    assert Operation.objects.get(pk=op.pk).status == "failed"
    assert backup.status == "failed" and "connect" in backup.error


def test_it_checks_integrity_and_reports_a_tampered_object(s3, site):
    backup = Backup.objects.create(site=site)
    services.backup_perform(backup=backup, transport=_transport())
    backup.refresh_from_db()
    assert restore.backup_check_integrity(backup) == []
    s3.put_object(Bucket=BUCKET, Key=backup.artefacts["files"]["key"], Body=b"tampered")
    problems = restore.drill_perform(backup=backup, transport=_transport(), log=lambda m: None)
    assert len(problems) == 1 and "files" in problems[0] and "checksum" in problems[0]
    restore._record_drill(backup, problems)
    from observability.models import Alert

    alert = Alert.objects.get(name="backup_drill_failed", status="firing")
    assert alert.tenant == site.tenant and "shop.example.com" in alert.summary
    assert Backup.objects.get(pk=backup.pk).verified_at is None


def test_it_takes_a_final_backup_before_delete_only_once_backups_exist(s3, site):
    class Ctx:
        def __init__(self):
            self.steps = []

        def step(self, name, **kw):
            self.steps.append(name)

        log = staticmethod(lambda m: None)

    ctx = Ctx()
    services.backup_before_delete(site=site, ctx=ctx)
    assert ctx.steps == [] and not site.backups.exists()
    Backup.objects.create(site=site, status="succeeded", created_at=timezone.now() - timedelta(days=1))
    with pytest.raises(services.OperationError):  # the fake VPS is unreachable: delete must stop
        with override_settings(FLEET_SSH_CONNECT_TIMEOUT=0.5):
            Vps.objects.filter(pk=site.vps_id).update(ip_address="127.0.0.1", ssh_port=1)
            services.backup_before_delete(site=site, ctx=ctx)
    final = site.backups.get(trigger="pre-delete")
    assert final.status == "failed"


def test_the_dump_counter_counts_rows_across_chunk_boundaries():
    data = gz(DUMP)
    counter = inspect.DumpCounter()
    for i in range(0, len(data), 7):
        counter.feed(data[i : i + 7])
    assert counter.finish() == {"empty": 0, "posts": 4, "rows_per_line": 3, "we`ird": 2}


def test_the_tar_indexer_reports_a_broken_archive():
    indexer = inspect.TarIndexer()
    indexer.feed(b"not a tar at all" * 100)
    with pytest.raises(ValueError, match="not a readable tar.gz"):
        indexer.finish()
