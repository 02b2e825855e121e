"""HTTP fetch restricted to configured hosts, with the server-side request forgery (SSRF) doors shut.

Every hop (the first URL and each redirect, followed here rather than by httpx) is checked again:
the scheme is http or https, the host is on the allow-list, and every address the name resolves to
is public (not private, loopback, link-local, multicast, reserved or unspecified; IPv6 addresses that
embed an IPv4 one are judged by it) unless it lies in an allow-listed network. The request then
goes to the very address that was checked (the Host header and TLS name stay the host's), so a DNS
answer that changes between the check and the connection cannot move it. Bodies are read up to a
size limit, and only text (text/*, JSON, XML) is returned.
"""

from __future__ import annotations

import ipaddress
import socket
from typing import Any
from urllib.parse import urljoin

import anyio
import httpx

from bentos.tools.errors import ToolFailed, ToolRefused
from ragyard.settings import ToolsSettings

PARAM = "arguments.url"
PARAMETERS = {
    "type": "object",
    "properties": {
        "url": {
            "type": "string",
            "minLength": 1,
            "maxLength": 2048,
            "description": "An http(s) URL on one of the allowed hosts.",
        }
    },
    "required": ["url"],
    "additionalProperties": False,
}
TEXT_TYPES = ("text/", "application/json", "application/xml", "application/xhtml+xml", "application/javascript")
NAT64 = ipaddress.ip_network("64:ff9b::/96")
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def refuse(message: str) -> ToolRefused:
    return ToolRefused(f"{PARAM}: {message}", param=PARAM)


def is_public(ip: IPAddress) -> bool:
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = ip.ipv4_mapped or ip.sixtofour or (ip.teredo[1] if ip.teredo else None)
        if ip in NAT64:
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if embedded is not None:
            return is_public(embedded)
    return ip.is_global and not (ip.is_multicast or ip.is_reserved or ip.is_unspecified or ip.is_loopback)


def is_text(content_type: str) -> bool:
    kind = content_type.split(";")[0].strip().lower()
    return kind.startswith(TEXT_TYPES) or kind.endswith(("+json", "+xml"))


class HostPolicy:
    """Which hosts may be fetched and which addresses they may resolve to."""

    def __init__(self, hosts: list[str], allow_networks: list[str], resolve: dict[str, list[str]]):
        self.hosts = [h.lower().rstrip(".") for h in hosts]
        self.allow_networks = [ipaddress.ip_network(n, strict=False) for n in allow_networks]
        self.resolve = {
            name.lower().rstrip("."): [ipaddress.ip_address(a) for a in addresses]
            for name, addresses in resolve.items()
        }

    def host_allowed(self, host: str) -> bool:
        host = host.lower().rstrip(".")
        return any(host == h or (h.startswith("*.") and host.endswith(h[1:])) for h in self.hosts)

    async def addresses(self, host: str, port: int) -> list[IPAddress]:
        """What `host` resolves to (a fixed entry, an address literal, or DNS)."""
        name = host.lower().rstrip(".")
        if name in self.resolve:
            return self.resolve[name]
        try:
            return [ipaddress.ip_address(name)]
        except ValueError:
            pass
        try:
            infos = await anyio.getaddrinfo(name, port, type=socket.SOCK_STREAM)
        except OSError as exc:
            raise ToolFailed(f"{host} does not resolve: {exc}") from None
        return [ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos]

    async def checked_address(self, url: httpx.URL) -> IPAddress:
        """The address to connect to for `url`, once the host and every address it resolves to pass."""
        if url.scheme not in ("http", "https"):
            raise refuse(f"scheme {url.scheme or '(none)'!r} is not allowed; http or https only")
        if not url.host or not self.host_allowed(url.host):
            raise refuse(f"host {url.host or '(none)'!r} is not among the allowed hosts")
        addresses = await self.addresses(url.host, url.port or (443 if url.scheme == "https" else 80))
        for ip in addresses:
            if not is_public(ip) and not any(ip in network for network in self.allow_networks):
                raise refuse(
                    f"host {url.host!r} resolves to {ip}, a private, loopback, link-local or reserved "
                    "address, which is not allowed"
                )
        return addresses[0]


class Fetcher:
    def __init__(self, settings: ToolsSettings, timeout_s: float):
        self.policy = HostPolicy(settings.fetch_hosts, settings.fetch_allow_networks, settings.fetch_resolve)
        self.max_bytes = settings.fetch_max_bytes
        self.max_redirects = settings.fetch_max_redirects
        # trust_env=False: never through an HTTP(S)_PROXY, which would do its own resolving.
        self.http = httpx.AsyncClient(
            trust_env=False, follow_redirects=False, timeout=timeout_s, headers={"User-Agent": "ragyard-tools/0.1"}
        )

    async def run(self, arguments: dict[str, Any]) -> dict[str, Any]:
        url = arguments["url"]
        for _ in range(self.max_redirects + 1):
            try:
                target = httpx.URL(url)
            except httpx.InvalidURL as exc:
                raise refuse(f"not a valid URL ({exc})") from None
            address = await self.policy.checked_address(target)
            try:
                answer = await self._get(target, address)
            except httpx.HTTPError as exc:
                raise ToolFailed(f"fetching {url} failed: {type(exc).__name__}: {exc}") from None
            if isinstance(answer, str):  # a redirect: check the next hop as the first
                url = answer
                continue
            return {"url": url, **answer}
        raise refuse(f"more than {self.max_redirects} redirects")

    async def _get(self, url: httpx.URL, address: IPAddress) -> dict[str, Any] | str:
        """The answer of `url` asked at `address`; or where it redirects to."""
        pinned = url.copy_with(host=str(address))
        headers = {"Host": url.netloc.decode("ascii")}
        extensions = {"sni_hostname": url.host} if url.scheme == "https" else {}
        request = self.http.build_request("GET", pinned, headers=headers, extensions=extensions)
        response = await self.http.send(request, stream=True)
        try:
            if response.is_redirect and "location" in response.headers:
                return urljoin(str(url), response.headers["location"])
            content_type = response.headers.get("content-type", "")
            if not is_text(content_type):
                raise refuse(f"{url} is {content_type or 'of no content type'}; only text is returned")
            body, truncated = bytearray(), False
            async for piece in response.aiter_bytes():
                body += piece
                if len(body) > self.max_bytes:
                    body, truncated = body[: self.max_bytes], True
                    break
            text = body.decode(response.encoding or "utf-8", errors="replace")
            return {"status": response.status_code, "content_type": content_type, "text": text, "truncated": truncated}
        finally:
            await response.aclose()

    async def aclose(self) -> None:
        await self.http.aclose()
