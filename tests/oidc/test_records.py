"""The token endpoint reads an app and a code through SQLAlchemy Core into frozen records
(``ClientRecord``, ``CodeRecord``, decision record 0014), built from every column of the row. A
column added to either table without its field would fail every token exchange: this says which."""

from __future__ import annotations

from dataclasses import fields

import pytest
from sqlalchemy import inspect

from vault.oidc.models import AuthorizationCode, OAuthClient
from vault.oidc.provider import ClientRecord, CodeRecord


@pytest.mark.parametrize(("record", "model"), [(ClientRecord, OAuthClient), (CodeRecord, AuthorizationCode)])
def test_each_record_has_exactly_the_columns_of_its_table(record: type, model: type) -> None:
    columns = {column.name for column in inspect(model).local_table.columns}
    names = {field.name for field in fields(record)}
    assert names == columns, f"{record.__name__}: add {sorted(columns - names)}, remove {sorted(names - columns)}"
