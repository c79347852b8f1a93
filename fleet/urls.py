from django.urls import path

from fleet import views

urlpatterns = [
    path("", views.vps_list, name="vps-list"),
    path("<int:pk>/", views.vps_detail, name="vps-detail"),
]
