from django.urls import path

from fleet import views

urlpatterns = [
    path("", views.vps_list, name="vps-list"),
    path("new", views.vps_create, name="vps-create"),
    path("adopt", views.vps_adopt, name="vps-adopt"),
    path("adopt/confirm", views.vps_adopt_confirm, name="vps-adopt-confirm"),
    path("<int:pk>/", views.vps_detail, name="vps-detail"),
    path("<int:pk>/bootstrap", views.vps_bootstrap, name="vps-bootstrap"),
    path("<int:pk>/capacity", views.vps_capacity, name="vps-capacity"),
    path("<int:pk>/cordon", views.vps_cordon, name="vps-cordon"),
    path("<int:pk>/delete", views.vps_delete, name="vps-delete"),
    path("clouds/", views.cloud_account_list, name="cloud-account-list"),
    path("clouds/<slug:provider>/", views.cloud_account_edit, name="cloud-account-edit"),
    path("clouds/<slug:provider>/default", views.cloud_account_default, name="cloud-account-default"),
    path("clouds/<slug:provider>/delete", views.cloud_account_delete, name="cloud-account-delete"),
]
