"""The SQLite form of a job, derived from the fields of :class:`modules.jobs.models.Job`.

A field's Python type decides its column: ``str`` -> TEXT, ``int`` -> INTEGER, ``float`` -> REAL, an enum -> TEXT
(its value), a JSON object -> TEXT holding JSON. A field that may be None is a nullable column; a field with a
default gets that default in SQL too, so a row written by an older schema reads back. Adding a field to ``Job``
adds a column: :func:`missing_columns` names what an existing database lacks and the store adds it.
"""

from __future__ import annotations

import json
import sqlite3
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum

from modules.jobs.models import Job

TABLE = "jobs"

SqlValue = str | int | float | None


@dataclass(frozen=True)
class Column:
    name: str
    sql_type: str  # TEXT, INTEGER or REAL
    nullable: bool
    json: bool  # stored as JSON text
    enum: type[Enum] | None
    default: SqlValue

    def ddl(self) -> str:
        if self.name == "seq":
            return "seq INTEGER PRIMARY KEY AUTOINCREMENT"
        parts = [self.name, self.sql_type]
        if not self.nullable:
            parts.append("NOT NULL")
        if self.name == "id":
            parts.append("UNIQUE")
        if self.default is not None:
            parts.append(f"DEFAULT {self.default!r}")
        return " ".join(parts)


def _column(name: str, annotation: object, default: object) -> Column:
    args = typing.get_args(annotation)
    nullable = isinstance(annotation, types.UnionType) and type(None) in args
    base = next((arg for arg in args if arg is not type(None)), annotation) if nullable else annotation
    origin = typing.get_origin(base) or base
    enum = base if isinstance(base, type) and issubclass(base, Enum) else None
    if origin is dict:
        sql_type, is_json = "TEXT", True
    elif enum is not None or base is str:
        sql_type, is_json = "TEXT", False
    elif base is int or base is bool:
        sql_type, is_json = "INTEGER", False
    elif base is float:
        sql_type, is_json = "REAL", False
    else:
        raise TypeError(f"Job.{name}: no SQLite column for {annotation!r}")
    sql_default: SqlValue = None
    if isinstance(default, Enum):
        sql_default = str(default.value)
    elif isinstance(default, (str, int, float)):
        sql_default = default
    return Column(name, sql_type, nullable, is_json, enum, sql_default)


def _columns() -> tuple[Column, ...]:
    columns = []
    for name, info in Job.model_fields.items():
        default = None if info.is_required() or info.default_factory is not None else info.default
        column = _column(name, info.annotation, default)
        if info.default_factory is not None and column.json:  # an empty payload reads as {}, never NULL
            column = Column(name, column.sql_type, column.nullable, True, None, "{}")
        columns.append(column)
    return tuple(columns)


COLUMNS: tuple[Column, ...] = _columns()
COLUMN_NAMES = tuple(column.name for column in COLUMNS)
SELECT_COLUMNS = ", ".join(COLUMN_NAMES)
CREATE_TABLE = f"CREATE TABLE IF NOT EXISTS {TABLE} (\n    " + ",\n    ".join(c.ddl() for c in COLUMNS) + "\n)"


def missing_columns(existing: set[str]) -> list[str]:
    """``ALTER TABLE`` statements adding the columns an older database lacks."""
    return [f"ALTER TABLE {TABLE} ADD COLUMN {column.ddl()}" for column in COLUMNS if column.name not in existing]


def to_row(job: Job, names: tuple[str, ...] = COLUMN_NAMES) -> tuple[SqlValue, ...]:
    """The SQL values of ``names`` (default: every column) in that order."""
    by_name = {column.name: column for column in COLUMNS}
    values: list[SqlValue] = []
    for name in names:
        column, value = by_name[name], getattr(job, name)
        if value is None:
            values.append(None)
        elif column.json:
            values.append(json.dumps(value, allow_nan=False))
        elif isinstance(value, Enum):
            values.append(str(value.value))
        else:
            values.append(value)
    return tuple(values)


def from_row(row: sqlite3.Row | Mapping[str, SqlValue]) -> Job:
    fields: dict[str, object] = {}
    for column in COLUMNS:
        value = row[column.name]
        if column.json and isinstance(value, str):
            fields[column.name] = json.loads(value)
        elif column.enum is not None and value is not None:
            fields[column.name] = column.enum(value)
        else:
            fields[column.name] = value
    return Job.model_validate(fields)
