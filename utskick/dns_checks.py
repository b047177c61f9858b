"""The From domain's SPF, DKIM and DMARC records, for `doctor`.

Gmail, Yahoo and Microsoft refuse or bin bulk mail whose From domain does not authenticate, and
the relay accepting the message says nothing of that. These records are public, so they can be
read before the first send; which server actually sends is the relay's business, so what is
checked is that the records exist, that SPF names the relay where it is known (Microsoft 365),
and that DMARC can align with the From domain. The resolver is passed in: `doctor --dns-server`
and the tests point it elsewhere than the system's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import dns.exception
import dns.resolver

Status = Literal["ok", "FAIL", "warn", "skip", "note"]
MICROSOFT_SPF = "include:spf.protection.outlook.com"
MICROSOFT_SELECTORS = ("selector1", "selector2")
LIFETIME = 5.0


@dataclass(frozen=True)
class Check:
    """One line of `doctor`: what was checked, how it stands, and what to do when it fails."""

    name: str
    status: Status
    detail: str
    fix: str = ""

    @property
    def blocks(self) -> bool:
        return self.status == "FAIL"


class NoDns(Exception):
    """No DNS server answered at all."""


def resolver(server: str | None = None) -> dns.resolver.Resolver:
    """The system's resolver, or one asking `server` ("IP" or "IP:PORT") only."""
    if server is None:
        try:
            found = dns.resolver.Resolver()
        except dns.resolver.NoResolverConfiguration:
            found = dns.resolver.Resolver(configure=False)
    else:
        host, _, port = server.rpartition(":") if server.count(":") == 1 else (server, "", "")
        found = dns.resolver.Resolver(configure=False)
        found.nameservers = [host]
        found.port = int(port) if port else 53
    found.lifetime = LIFETIME
    return found


def txt(resolve: dns.resolver.Resolver, name: str, prefix: str) -> list[str]:
    """The TXT records at `name` that start with `prefix` (case-insensitive); [] when none."""
    try:
        answer = resolve.resolve(name, "TXT")
    except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
        return []
    except (dns.resolver.NoNameservers, dns.exception.Timeout) as e:
        raise NoDns(str(e)) from None
    records = [b"".join(r.strings).decode("utf-8", "replace") for r in answer]
    return [r for r in records if r.lower().startswith(prefix.lower())]


def tags(record: str) -> dict[str, str]:
    """'v=DMARC1; p=reject; adkim=s' as {'v': 'DMARC1', 'p': 'reject', 'adkim': 's'}."""
    out = {}
    for part in record.split(";"):
        key, _, value = part.partition("=")
        if key.strip():
            out[key.strip().lower()] = value.strip()
    return out


def organisational(domain: str) -> str:
    """The domain DMARC falls back to for a subdomain: its last two labels (no public suffix
    list: a From under a two-label suffix such as .co.uk is rare here)."""
    return ".".join(domain.split(".")[-2:])


def records(domain: str, selectors: tuple[str, ...], microsoft: bool, resolve: dns.resolver.Resolver) -> list[Check]:
    """SPF, DKIM and DMARC of the From domain, one check each, or one "skip" without DNS."""
    try:
        spf, dkim, (dmarc, policy) = _spf(domain, microsoft, resolve), _dkim(domain, selectors, resolve), _dmarc(domain, resolve)
    except NoDns:
        return [Check("SPF, DKIM, DMARC", "skip", "skipped: no DNS (no DNS server answered)",
                      "run doctor where DNS can be reached, or name a server with --dns-server")]
    return [spf, dkim, _enforced(dmarc, policy, spf, dkim)]


def _enforced(dmarc: Check, policy: str, spf: Check, dkim: Check) -> Check:
    """A missing SPF or DKIM alone is a warning: the other can carry DMARC. Both missing under a
    policy that rejects or quarantines blocks the send: receivers refuse or junk every message."""
    if policy not in ("reject", "quarantine") or spf.status != "warn" or dkim.status != "warn":
        return dmarc
    outcome = "refuse" if policy == "reject" else "put in spam"
    return Check("DMARC", "FAIL", f"the From domain's DMARC says p={policy}, and neither SPF nor DKIM passes: "
                 f"receivers will {outcome} every message", "fix SPF or DKIM as said above (DKIM is the one that survives forwarding)")


def _spf(domain: str, microsoft: bool, resolve: dns.resolver.Resolver) -> Check:
    found = txt(resolve, domain, "v=spf1")
    if not found:
        return Check("SPF", "warn", f"{domain} has no SPF record (TXT v=spf1 …)",
                     f"publish one naming the relay's servers, e.g. \"v=spf1 {MICROSOFT_SPF if microsoft else 'include:…'} -all\"")
    if len(found) > 1:
        return Check("SPF", "warn", f"{domain} has {len(found)} SPF records: receivers treat that as none",
                     "merge them into one TXT record")
    if microsoft and MICROSOFT_SPF not in found[0].lower():
        return Check("SPF", "warn", f"{domain}'s SPF does not include Microsoft 365",
                     f"add {MICROSOFT_SPF} to it")
    return Check("SPF", "ok", f"{domain}: {found[0]}")


def _dkim(domain: str, selectors: tuple[str, ...], resolve: dns.resolver.Resolver) -> Check:
    if not selectors:
        return Check("DKIM", "skip", "skipped: the selector is not known",
                     "set sending.dkim_selector to the relay's DKIM selector to have it checked")
    published = [s for s in selectors if any("p=" in r for r in txt(resolve, f"{s}._domainkey.{domain}", ""))]
    if not published:
        names = " or ".join(f"{s}._domainkey.{domain}" for s in selectors)
        return Check("DKIM", "warn", f"no DKIM key at {names}",
                     "turn on DKIM signing for the domain at the relay (Microsoft 365: Defender portal, "
                     "Email authentication settings, DKIM) and publish the records it gives")
    return Check("DKIM", "ok", f"key published for {domain} (selector {', '.join(published)}): signatures align with From")


def _dmarc(domain: str, resolve: dns.resolver.Resolver) -> tuple[Check, str]:
    """The check, and the policy receivers apply ("" without a record)."""
    at = domain
    found = txt(resolve, f"_dmarc.{domain}", "v=DMARC1")
    if not found and organisational(domain) != domain:
        at = organisational(domain)
        found = txt(resolve, f"_dmarc.{at}", "v=DMARC1")
    if not found:
        return Check("DMARC", "warn", f"no DMARC record at _dmarc.{domain}",
                     f"publish one, at least \"v=DMARC1; p=none; rua=mailto:dmarc@{organisational(domain)}\" "
                     "(Gmail and Yahoo require it of bulk senders)"), ""
    policy = tags(found[0])
    strict = [name for key, name in (("aspf", "SPF"), ("adkim", "DKIM")) if policy.get(key, "r").lower() == "s"]
    if strict and at != domain:
        return Check("DMARC", "warn", f"_dmarc.{at} asks for strict {' and '.join(strict)} alignment, and From is "
                     f"{domain}, a subdomain", f"send from an address at {at}, or relax {', '.join(strict)} alignment"), ""
    return Check("DMARC", "ok", f"_dmarc.{at}: p={policy.get('p', '?')}; SPF (envelope sender = From) and DKIM "
                 f"align with {domain}"), policy.get("p", "").lower()
