from django.urls import path

from backups.api import views

urlpatterns = [
    path("sites/<int:pk>/backups", views.SiteBackupsView.as_view(), name="api-site-backups"),
    path("backups/<int:pk>", views.BackupDetailView.as_view(), name="api-backup"),
    path("backups/<int:pk>/download", views.BackupDownloadView.as_view(), name="api-backup-download"),
    path("backups/<int:pk>/restore", views.BackupRestoreView.as_view(), name="api-backup-restore"),
    path("backups/<int:pk>/verify", views.BackupVerifyView.as_view(), name="api-backup-verify"),
]
