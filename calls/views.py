from django.contrib.admin.views.decorators import staff_member_required
from django.http import HttpRequest, HttpResponse


@staff_member_required
def index(request: HttpRequest) -> HttpResponse:
    return HttpResponse("dashboard")
