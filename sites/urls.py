from django.urls import path

from sites import views

urlpatterns = [
    path("", views.site_list, name="site-list"),
    path("new", views.site_create, name="site-create"),
    path("<int:pk>/", views.site_detail, name="site-detail"),
    path("<int:pk>/deploy", views.site_deploy, name="site-deploy"),
    path("<int:pk>/rollback", views.site_rollback, name="site-rollback"),
    path("<int:pk>/ssl", views.site_ssl, name="site-ssl"),
    path("<int:pk>/suspend", views.site_suspend, name="site-suspend"),
    path("<int:pk>/unsuspend", views.site_unsuspend, name="site-unsuspend"),
    path("<int:pk>/delete", views.site_delete, name="site-delete"),
]
