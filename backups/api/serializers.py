from rest_framework import serializers

from backups.models import Backup


class BackupSerializer(serializers.ModelSerializer):
    site = serializers.SerializerMethodField()
    sha256 = serializers.CharField(
        source="manifest_sha256", help_text="sha256 of the manifest, which lists every artefact's"
    )
    artefacts = serializers.SerializerMethodField()

    class Meta:
        model = Backup
        fields = [
            "id",
            "site",
            "kind",
            "trigger",
            "status",
            "release",
            "size_bytes",
            "sha256",
            "artefacts",
            "error",
            "created_at",
            "started_at",
            "finished_at",
            "verified_at",
            "verify_error",
        ]

    def get_site(self, backup) -> dict:
        return {"id": backup.site_id, "domain": backup.site.domain}

    def get_artefacts(self, backup) -> dict:
        return {name: {"size": a["size"], "sha256": a["sha256"]} for name, a in backup.artefacts.items()}


class BackupDetailSerializer(BackupSerializer):
    class Meta(BackupSerializer.Meta):
        fields = [*BackupSerializer.Meta.fields, "manifest"]


class BackupCreateSerializer(serializers.Serializer):
    kind = serializers.ChoiceField(choices=Backup.Kind.choices, default=Backup.Kind.FULL)


class RestoreSerializer(serializers.Serializer):
    target_site = serializers.IntegerField(required=False, min_value=1)


class DownloadSerializer(serializers.Serializer):
    artefact = serializers.ChoiceField(choices=["files", "database", "manifest"], required=False)
