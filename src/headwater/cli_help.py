"""Help text without Typer's type labels (``DATABASE <str>``, ``--handler <list[str]>``): each
value is shown by its metavar (``URL``, ``NAME``), or by the parameter's name."""

from __future__ import annotations

import re
from typing import Any

from typer.core import TyperCommand

#: How the database argument is documented, everywhere it is taken.
DATABASE_HELP = ("A SQLite file (my.db, sqlite:///relative/path.db, sqlite:////absolute/path.db) "
                 "or postgresql://user@host:port/dbname  [env: HEADWATER_DATABASE_URL]")

_TYPE = re.compile(r" <[^<>]*>$")


class PlainHelp(TyperCommand):
    # Typer vendors its own click: its Context and HelpFormatter, whatever they are.
    def format_options(self, ctx: Any, formatter: Any) -> None:
        sections: dict[str, list[tuple[str, str]]] = {"Arguments": [], "Options": []}
        for param in self.get_params(ctx):
            record = param.get_help_record(ctx)
            if record is None:
                continue
            name, text = record
            if param.param_type_name == "argument":
                sections["Arguments"].append((_TYPE.sub("", name), text))
            else:
                value = f" {(param.name or 'value').upper()}"
                sections["Options"].append((_TYPE.sub(value, name), text))
        for title, rows in sections.items():
            if rows:
                with formatter.section(title):
                    formatter.write_dl(rows)
