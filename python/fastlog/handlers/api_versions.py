"""ApiVersions (18): the API keys and version ranges this broker serves.

v0-v4. An unknown version is answered in v0 with UNSUPPORTED_VERSION (KIP-511), by the
server before it gets here. v3+ carries the client's software name and version.
"""

from fastlog.handlers import RequestContext, api_versions_body, handles


@handles(18, 0, 4)
async def handle(ctx: RequestContext, request):
    return api_versions_body()
