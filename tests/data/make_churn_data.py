"""Write a synthetic customer-churn table: the "second dataset" of tests/test_second_dataset.py.

Run with the generated project's environment (it has numpy and pandas):

    python make_churn_data.py OUT.db [OUT.csv]
    python make_churn_data.py postgresql://user:password@host/database

A database URL gets the table through SQLAlchemy, with a `row_number` column to keep the order.

Deterministic (numpy seed), 1,500 rows. Unlike the German credit data it has an id column and a
free-text column (`agent_notes`) that cannot be features, a column that is mostly missing
(`referral_code`), float and integer features, a sensitive attribute `gender`, a text target
`churned` ("yes"/"no", positive "yes") with a learnable signal, and a few missing values.
"""

from __future__ import annotations

import sqlite3
import sys
from pathlib import Path

import numpy as np
import pandas as pd

ROWS = 1500
SEED = 20240611
TABLE = "customers"


def make_table(rows: int = ROWS, seed: int = SEED) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    contract = rng.choice(
        ["month-to-month", "one-year", "two-year"], size=rows, p=[0.5, 0.3, 0.2]
    )
    tenure = rng.integers(1, 73, size=rows)
    monthly = np.round(rng.uniform(20, 120, size=rows), 2)
    calls = rng.poisson(1.5, size=rows)
    payment = rng.choice(
        ["bank transfer", "card", "electronic check", "mailed check"], rows
    )
    gender = rng.choice(["female", "male"], size=rows)
    age = rng.integers(18, 81, size=rows)

    # The signal: short, monthly contracts with high charges and many support calls churn.
    # Gender plays no part, so the fairness gate has honest data to pass on.
    logit = (
        -0.9
        + 2.0 * (contract == "month-to-month")
        - 1.0 * (contract == "two-year")
        - 0.06 * tenure
        + 0.035 * (monthly - 70)
        + 0.6 * calls
        + 0.7 * (payment == "electronic check")
    )
    churned = rng.random(rows) < 1 / (1 + np.exp(-logit))

    table = pd.DataFrame(
        {
            "customer_id": [f"C{index:05d}" for index in range(1, rows + 1)],
            "gender": gender,
            "age": age,
            "contract": contract,
            "tenure_months": tenure,
            "monthly_charges": monthly,
            "support_calls": calls,
            "payment_method": payment,
            "agent_notes": [
                f"call {index}: {topic}"
                for index, topic in enumerate(
                    rng.choice(
                        ["billing", "speed", "moving", "price", "outage"], size=rows
                    )
                )
            ],
            "referral_code": np.where(
                rng.random(rows) < 0.15,
                rng.choice(["FRIEND", "PARTNER"], size=rows),
                None,
            ),
            "churned": np.where(churned, "yes", "no"),
        }
    )
    # A few missing values, as real extracts have.
    table.loc[rng.choice(rows, 25, replace=False), "monthly_charges"] = np.nan
    table.loc[rng.choice(rows, 20, replace=False), "payment_method"] = None
    return table


def main(argv: list[str]) -> int:
    table = make_table()
    if "://" in argv[0]:
        import sqlalchemy

        engine = sqlalchemy.create_engine(argv[0])
        table.to_sql(TABLE, engine, index=True, index_label="row_number")
        print(
            f"wrote {len(table)} rows to {engine.url.render_as_string(hide_password=True)}"
        )
        return 0
    database = Path(argv[0])
    database.parent.mkdir(parents=True, exist_ok=True)
    database.unlink(missing_ok=True)
    with sqlite3.connect(database) as connection:
        table.to_sql(TABLE, connection, index=False)
    if len(argv) > 1:
        table.to_csv(argv[1], index=False)
    share = (table["churned"] == "yes").mean()
    print(f"wrote {len(table)} rows ({share:.1%} churned) to {database}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
