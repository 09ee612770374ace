"""What a parse returns: frozen values, safe to pickle from a worker process."""

from __future__ import annotations

from dataclasses import dataclass

from mailcase.mail.header_info import HeaderInfo


@dataclass(frozen=True)
class Attachment:
    name: str
    content_type: str
    size: int
    sha256: str
    #: for containers (winmail.dat, an attached mail): what is inside
    contents: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, object]:
        d: dict[str, object] = {
            "name": self.name,
            "content_type": self.content_type,
            "size": self.size,
            "sha256": self.sha256,
        }
        if self.contents:
            d["contents"] = list(self.contents)
        return d


@dataclass(frozen=True)
class ParsedEmail:
    headers: HeaderInfo
    to: tuple[str, ...]
    cc: tuple[str, ...]
    reply_to: tuple[str, ...]
    text_body: str
    body_from_html: bool
    attachments: tuple[Attachment, ...]
    defects: tuple[str, ...]
    parser: str
