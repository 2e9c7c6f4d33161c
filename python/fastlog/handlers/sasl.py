"""SaslHandshake (17, v0-1) and SaslAuthenticate (36, v0-2) outside a SASL exchange.

On a SASL listener the connection's authenticator (`fastlog.security.sasl`) answers both
before they reach here. What arrives here came on a listener without SASL, or after the
connection authenticated without re-authentication enabled: Kafka answers ILLEGAL_SASL_STATE,
and so does fastlog. Registering them also makes ApiVersions advertise them.
"""

from __future__ import annotations

from fastlog import protocol
from fastlog.handlers import RequestContext, handles
from fastlog.protocol import ErrorCode


@handles(17, 0, 1)
async def handshake(ctx: RequestContext, request):
    return protocol.SaslHandshakeResponse(error_code=ErrorCode.ILLEGAL_SASL_STATE, mechanisms=[])


@handles(36, 0, 2)
async def authenticate(ctx: RequestContext, request):
    sasl = any(l.name == ctx.listener and l.uses_sasl for l in ctx.broker.config.client_listeners)
    message = "SaslAuthenticate request received after successful authentication" if sasl else f"listener {ctx.listener or '?'} does not use SASL"
    return protocol.SaslAuthenticateResponse(error_code=ErrorCode.ILLEGAL_SASL_STATE, error_message=message, auth_bytes=b"", session_lifetime_ms=0)
