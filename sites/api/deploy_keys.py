"""A site's deploy key for private repositories: POST creates it, or rotates it."""

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework.response import Response
from rest_framework.views import APIView

from chom.api.permissions import TENANT, is_staff_request
from chom.http import client_ip
from sites import selectors
from sites.api.serializers import DeployKeySerializer, deploy_key_data
from sites.deploy_keys import site_deploy_key_create


class SiteDeployKeyView(APIView):
    """The answer holds the public key only: the private half is never returned."""

    audience = TENANT  # as a deploy: the tenant's own request

    @extend_schema(request=None, responses={200: DeployKeySerializer})
    def post(self, request, pk: int):
        visible = selectors.sites_visible(tenant=request.auth.tenant, staff=is_staff_request(request))
        site = get_object_or_404(visible, pk=pk)
        site = site_deploy_key_create(site=site, actor=request.user, source_ip=client_ip(request))
        return Response(DeployKeySerializer(deploy_key_data(site)).data)
