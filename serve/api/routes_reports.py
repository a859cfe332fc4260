"""``/cases/<id>/str``: the suspicious-transaction report of a SAR-filed case (goAML XML or a
printable HTML page); every export is audited."""

from __future__ import annotations

from sanic import Request
from sanic.response import HTTPResponse, html, raw

from aml.auth import Permission
from serve.api.routes_base import RouteTable
from serve.services import Actor, str_export

routes = RouteTable()


@routes.route("GET", "/cases/<case_id:str>/str", permission=Permission.REPORT_EXPORT)
async def export_str(request: Request, actor: Actor, case_id: str) -> HTTPResponse:
    """goAML STR of a SAR-filed case; ``?format=html`` for the printable view."""
    fmt = request.args.get("format", "xml")
    report, rendered = await str_export.export(
        request.app.ctx.store,
        actor=actor,
        case_id=case_id,
        settings=request.app.ctx.settings,
        fmt=fmt,
    )
    if isinstance(rendered, bytes):
        return raw(
            rendered,
            content_type="application/xml; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{report.filename}.xml"'},
        )
    return html(rendered)
