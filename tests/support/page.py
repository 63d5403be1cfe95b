"""Reading the status page as data: the text of elements by id and the rows of its tables."""

from __future__ import annotations

from html.parser import HTMLParser

VOID = frozenset({"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"})


class Page(HTMLParser):
    """The rendered DOM: the text of each table's rows by table id, element ids, and external references."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self.text_by_id: dict[str, str] = {}
        self.external: list[str] = []
        self.title = ""
        self._table: str | None = None
        self._row: list[str] | None = None
        self._cell: list[str] | None = None
        self._open: list[tuple[str, str | None, list[str]]] = []
        self._in_title = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        for name in ("src", "href"):
            ref = a.get(name) or ""
            if ref.startswith(("http:", "https:", "//")):
                self.external.append(ref)
        if tag == "link" or (tag == "script" and a.get("src")):
            self.external.append(f"<{tag}> {a}")
        if tag not in VOID:
            self._open.append((tag, a.get("id"), []))
        if tag == "table" and a.get("id"):
            self._table = a["id"]
            self.tables[self._table] = []
        elif tag == "tr" and self._table is not None:
            self._row = []
        elif tag in ("td", "th") and self._row is not None:
            self._cell = []
        elif tag == "title":
            self._in_title = True

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._row is not None and self._cell is not None:
            self._row.append(" ".join("".join(self._cell).split()))
            self._cell = None
        elif tag == "tr" and self._table is not None and self._row is not None:
            self.tables[self._table].append(self._row)
            self._row = None
        elif tag == "table":
            self._table = None
        elif tag == "title":
            self._in_title = False
        while self._open:
            open_tag, element_id, parts = self._open.pop()
            if element_id:
                self.text_by_id[element_id] = " ".join(" ".join(parts).split())
            if open_tag == tag:
                break

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)
        for _, element_id, parts in self._open:
            if element_id:
                parts.append(data)
        if self._in_title:
            self.title += data

    def rows(self, table_id: str) -> list[dict[str, str]]:
        """The body rows of a table as header -> cell text."""
        header, *body = self.tables[table_id]
        return [dict(zip(header, row, strict=False)) for row in body]
