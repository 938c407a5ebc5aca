"""Money rules held by the database: a transaction type's direction, the sign of every cash-book row
following it, no zero operations, no negative amounts entered on a request.

- `transaction_types.is_income`: set for the types whose name says income (Приход, доход, income);
  every other type is an expense type.
- A BEFORE trigger on `transactions` makes every amount written (by any path: API, task, import, a
  statement typed by hand) positive for an income type and negative for an expense type. The rows
  already there are brought to that sign here.
- The automatic incomes of requests whose handover is zero or negative are removed: such a request
  books no income any more.
- CHECK constraints: `transactions.amount <> 0`, `requests.result >= 0`, `requests.expenses >= 0`.

The SQL is written out here, frozen: later changes of the models do not change this migration.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

SIGN_FUNCTION = """
CREATE FUNCTION leadline_transaction_sign() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    income boolean;
BEGIN
    SELECT is_income INTO income FROM transaction_types WHERE id = NEW.transaction_type_id;
    IF income IS NULL THEN
        RETURN NEW;  -- an unknown type: the foreign key refuses the row
    END IF;
    NEW.amount := CASE WHEN income THEN abs(NEW.amount) ELSE -abs(NEW.amount) END;
    RETURN NEW;
END
$$
"""
SIGN_TRIGGER = """
CREATE TRIGGER transactions_sign_follows_type
BEFORE INSERT OR UPDATE OF amount, transaction_type_id ON transactions
FOR EACH ROW EXECUTE FUNCTION leadline_transaction_sign()
"""


def upgrade() -> None:
    op.add_column("transaction_types",
                  sa.Column("is_income", sa.Boolean(), server_default=sa.text("false"), nullable=False))
    op.execute("UPDATE transaction_types SET is_income = true "
               "WHERE name = 'Приход' OR lower(name) LIKE '%приход%' OR lower(name) LIKE '%доход%' "
               "OR lower(name) LIKE '%income%'")
    op.execute("DELETE FROM transactions WHERE request_id IS NOT NULL AND amount <= 0")
    op.execute("UPDATE transactions t SET amount = CASE WHEN tt.is_income THEN abs(t.amount) ELSE -abs(t.amount) END "
               "FROM transaction_types tt WHERE tt.id = t.transaction_type_id "
               "AND (tt.is_income AND t.amount < 0 OR NOT tt.is_income AND t.amount > 0)")
    op.execute(SIGN_FUNCTION)
    op.execute(SIGN_TRIGGER)
    op.create_check_constraint(op.f("ck_transactions_amount_not_zero"), "transactions", "amount <> 0")
    op.create_check_constraint(op.f("ck_requests_result_not_negative"), "requests", "result >= 0")
    op.create_check_constraint(op.f("ck_requests_expenses_not_negative"), "requests", "expenses >= 0")


def downgrade() -> None:
    op.drop_constraint(op.f("ck_requests_expenses_not_negative"), "requests", type_="check")
    op.drop_constraint(op.f("ck_requests_result_not_negative"), "requests", type_="check")
    op.drop_constraint(op.f("ck_transactions_amount_not_zero"), "transactions", type_="check")
    op.execute("DROP TRIGGER transactions_sign_follows_type ON transactions")
    op.execute("DROP FUNCTION leadline_transaction_sign()")
    op.drop_column("transaction_types", "is_income")
