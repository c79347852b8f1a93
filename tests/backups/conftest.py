from tests.backups.fixtures import moto_s3, s3  # noqa: F401 - shared fixtures
