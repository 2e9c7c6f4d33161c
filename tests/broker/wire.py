"""A tiny blocking Kafka client over a raw socket, for tests that need exact bytes."""

from __future__ import annotations

import socket
import struct
from typing import Any, Optional

from fastlog import protocol


class WireClient:
    def __init__(self, bootstrap: str, timeout: float = 10, *, client_id: str = "wire-test", source: Optional[str] = None) -> None:
        """`source`: the local address to connect from (another loopback address, 127.0.0.2, ...)."""
        host, port = bootstrap.rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=timeout, source_address=(source, 0) if source else None)
        self.correlation_id = 0
        self.client_id = client_id

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> "WireClient":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def send_frame(self, payload: bytes) -> None:
        self.sock.sendall(struct.pack(">i", len(payload)) + payload)

    def encode(self, body: Any, version: int, correlation_id: Optional[int] = None) -> bytes:
        self.correlation_id += 1
        header = protocol.RequestHeader(
            request_api_key=body.API_KEY,
            request_api_version=version,
            correlation_id=self.correlation_id if correlation_id is None else correlation_id,
            client_id=self.client_id,
        )
        return protocol.encode_request(header, body).getvalue()

    def recv_frame(self) -> Optional[bytes]:
        """The next response frame, or None when the broker closed the connection."""
        head = self._recv_exact(4)
        if head is None:
            return None
        (size,) = struct.unpack(">i", head)
        return self._recv_exact(size)

    def _recv_exact(self, size: int) -> Optional[bytes]:
        data = bytearray()
        while len(data) < size:
            chunk = self.sock.recv(size - len(data))
            if not chunk:
                return None
            data += chunk
        return bytes(data)

    def request(self, body: Any, version: int) -> Any:
        self.send_frame(self.encode(body, version))
        return self.read_response(type(body).API_KEY, version)

    def read_response(self, api_key: int, version: int) -> Any:
        frame = self.recv_frame()
        assert frame is not None, "broker closed the connection"
        reader = protocol.Reader(frame)
        header = protocol.ResponseHeader.decode(reader, protocol.response_header_version(api_key, version))
        body = protocol.response_class(api_key).decode(reader, version)
        self.last_correlation_id = header.correlation_id
        return body

    def closed_by_broker(self) -> bool:
        try:
            return self.sock.recv(1) == b""
        except ConnectionResetError:
            return True
        except socket.timeout:
            return False
