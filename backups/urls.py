from django.urls import path

from backups import views

urlpatterns = [
    path("<int:pk>/", views.backup_detail, name="backup-detail"),
    path("<int:pk>/download", views.backup_download, name="backup-download"),
    path("<int:pk>/restore", views.backup_restore, name="backup-restore"),
    path("<int:pk>/verify", views.backup_verify, name="backup-verify"),
    path("sites/<int:site_pk>/create", views.backup_create, name="backup-create"),
]
