"""Initial schema: every table of the product, its keys and indexes, and the seed lookups.

Revision ID: 0001
Revises: 
Create Date: 2026-11-27 01:00:05.945057
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('alerts',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('rule', sa.String(length=50), nullable=False),
    sa.Column('severity', sa.String(length=10), nullable=False),
    sa.Column('status', sa.String(length=10), server_default='firing', nullable=False),
    sa.Column('message', sa.Text(), nullable=False),
    sa.Column('value', sa.Double(), nullable=True),
    sa.Column('fired_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('resolved_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_notified_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('notifications', postgresql.JSONB(astext_type=sa.Text()), nullable=True),
    sa.CheckConstraint("severity IN ('info', 'warning', 'critical')", name=op.f('ck_alerts_severity')),
    sa.CheckConstraint("status IN ('firing', 'resolved')", name=op.f('ck_alerts_status')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_alerts'))
    )
    op.create_index('ix_alerts_fired_at', 'alerts', [sa.literal_column('fired_at DESC')], unique=False)
    op.create_index('uq_alerts_firing_rule', 'alerts', ['rule'], unique=True, postgresql_where=sa.text("status = 'firing'"))
    op.create_table('cities',
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('id', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_cities')),
    sa.UniqueConstraint('name', name=op.f('uq_cities_name'))
    )
    op.create_table('directions',
    sa.Column('name', sa.String(length=50), nullable=False),
    sa.Column('id', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_directions')),
    sa.UniqueConstraint('name', name=op.f('uq_directions_name'))
    )
    op.create_table('mailbox_states',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('mailbox', sa.String(length=255), nullable=False),
    sa.Column('folder', sa.String(length=255), nullable=False),
    sa.Column('uidvalidity', sa.BigInteger(), nullable=True),
    sa.Column('last_uid', sa.BigInteger(), server_default=sa.text('0'), nullable=False),
    sa.Column('last_run_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_mailbox_states')),
    sa.UniqueConstraint('mailbox', 'folder', name=op.f('uq_mailbox_states_mailbox_folder'))
    )
    op.create_table('mango_events',
    sa.Column('id', sa.BigInteger(), nullable=False),
    sa.Column('dedupe_key', sa.String(length=128), nullable=False),
    sa.Column('event_type', sa.String(length=50), nullable=False),
    sa.Column('entry_id', sa.String(length=128), nullable=True),
    sa.Column('payload', postgresql.JSONB(astext_type=sa.Text()), nullable=True),
    sa.Column('raw_body', sa.Text(), nullable=True),
    sa.Column('status', sa.String(length=20), server_default='pending', nullable=False),
    sa.Column('received_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('processed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('attempts', sa.Integer(), server_default=sa.text('0'), nullable=False),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.CheckConstraint("status IN ('pending', 'processed', 'failed')", name=op.f('ck_mango_events_status')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_mango_events')),
    sa.UniqueConstraint('dedupe_key', name=op.f('uq_mango_events_dedupe_key'))
    )
    op.create_index('ix_mango_events_entry_id', 'mango_events', ['entry_id'], unique=False)
    op.create_index('ix_mango_events_pending_received_at', 'mango_events', ['received_at'], unique=False, postgresql_where=sa.text("status = 'pending'"))
    op.create_table('request_types',
    sa.Column('name', sa.String(length=50), nullable=False),
    sa.Column('id', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_request_types')),
    sa.UniqueConstraint('name', name=op.f('uq_request_types_name'))
    )
    op.create_table('roles',
    sa.Column('name', sa.String(length=50), nullable=False),
    sa.Column('id', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_roles')),
    sa.UniqueConstraint('name', name=op.f('uq_roles_name'))
    )
    op.create_table('transaction_types',
    sa.Column('name', sa.String(length=50), nullable=False),
    sa.Column('id', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_transaction_types')),
    sa.UniqueConstraint('name', name=op.f('uq_transaction_types_name'))
    )
    op.create_table('advertising_campaigns',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('city_id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('phone_number', sa.String(length=40), nullable=False),
    sa.Column('phone', sa.String(length=20), nullable=True),
    sa.Column('is_active', sa.Boolean(), server_default=sa.text('true'), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.ForeignKeyConstraint(['city_id'], ['cities.id'], name=op.f('fk_advertising_campaigns_city_id_cities'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_advertising_campaigns'))
    )
    op.create_index(op.f('ix_advertising_campaigns_city_id'), 'advertising_campaigns', ['city_id'], unique=False)
    op.create_index(op.f('ix_advertising_campaigns_phone'), 'advertising_campaigns', ['phone'], unique=False)
    op.create_index('uq_advertising_campaigns_active_phone', 'advertising_campaigns', ['phone'], unique=True, postgresql_where=sa.text('is_active'))
    op.create_table('users',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('login', sa.String(length=100), nullable=False),
    sa.Column('password_hash', sa.String(length=255), nullable=False),
    sa.Column('role_id', sa.Integer(), nullable=False),
    sa.Column('status', sa.String(length=20), server_default='active', nullable=False),
    sa.Column('city_id', sa.Integer(), nullable=True),
    sa.Column('full_name', sa.String(length=200), nullable=False),
    sa.Column('phone_number', sa.String(length=40), nullable=True),
    sa.Column('phone', sa.String(length=20), nullable=True),
    sa.Column('birth_date', sa.Date(), nullable=True),
    sa.Column('passport', sa.String(length=40), nullable=True),
    sa.Column('chat_id', sa.String(length=100), nullable=True),
    sa.Column('notes', sa.Text(), nullable=True),
    sa.Column('last_login_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.CheckConstraint("status IN ('active', 'inactive', 'suspended', 'busy', 'pending')", name=op.f('ck_users_status')),
    sa.ForeignKeyConstraint(['city_id'], ['cities.id'], name=op.f('fk_users_city_id_cities'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['role_id'], ['roles.id'], name=op.f('fk_users_role_id_roles'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_users'))
    )
    op.create_index(op.f('ix_users_city_id'), 'users', ['city_id'], unique=False)
    op.create_index('ix_users_city_id_status', 'users', ['city_id', 'status'], unique=False)
    op.create_index(op.f('ix_users_phone'), 'users', ['phone'], unique=False)
    op.create_index(op.f('ix_users_role_id'), 'users', ['role_id'], unique=False)
    op.create_index('ix_users_role_id_city_id', 'users', ['role_id', 'city_id'], unique=False)
    op.create_index('uq_users_login_lower', 'users', [sa.literal_column('lower(login)')], unique=True)
    op.create_table('jobs',
    sa.Column('id', sa.UUID(), nullable=False),
    sa.Column('kind', sa.String(length=50), nullable=False),
    sa.Column('status', sa.String(length=20), server_default='queued', nullable=False),
    sa.Column('params', postgresql.JSONB(astext_type=sa.Text()), nullable=True),
    sa.Column('result', postgresql.JSONB(astext_type=sa.Text()), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('attempts', sa.Integer(), server_default=sa.text('0'), nullable=False),
    sa.Column('created_by_id', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint("status IN ('queued', 'running', 'succeeded', 'failed')", name=op.f('ck_jobs_status')),
    sa.ForeignKeyConstraint(['created_by_id'], ['users.id'], name=op.f('fk_jobs_created_by_id_users'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_jobs'))
    )
    op.create_index('ix_jobs_created_at', 'jobs', [sa.literal_column('created_at DESC')], unique=False)
    op.create_index('ix_jobs_kind_status', 'jobs', ['kind', 'status'], unique=False)
    op.create_table('request_events',
    sa.Column('id', sa.BigInteger(), nullable=False),
    sa.Column('request_id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=True),
    sa.Column('action', sa.String(length=20), nullable=False),
    sa.Column('field', sa.String(length=50), nullable=True),
    sa.Column('old_value', sa.Text(), nullable=True),
    sa.Column('new_value', sa.Text(), nullable=True),
    sa.Column('source', sa.String(length=20), server_default='api', nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_request_events_user_id_users'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_request_events'))
    )
    op.create_index('ix_request_events_request_id_id', 'request_events', ['request_id', 'id'], unique=False)
    op.create_index(op.f('ix_request_events_user_id'), 'request_events', ['user_id'], unique=False)
    op.create_table('requests',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('advertising_campaign_id', sa.Integer(), nullable=True),
    sa.Column('city_id', sa.Integer(), nullable=False),
    sa.Column('request_type_id', sa.Integer(), nullable=False),
    sa.Column('client_phone', sa.String(length=20), nullable=False),
    sa.Column('client_phone_raw', sa.String(length=40), nullable=True),
    sa.Column('client_name', sa.String(length=200), nullable=True),
    sa.Column('address', sa.Text(), nullable=True),
    sa.Column('meeting_date', sa.DateTime(timezone=True), nullable=True),
    sa.Column('direction_id', sa.Integer(), nullable=True),
    sa.Column('problem', sa.Text(), nullable=True),
    sa.Column('status', sa.String(length=50), server_default='Новая', nullable=False),
    sa.Column('master_id', sa.Integer(), nullable=True),
    sa.Column('master_notes', sa.Text(), nullable=True),
    sa.Column('result', sa.Numeric(precision=12, scale=2), nullable=True),
    sa.Column('expenses', sa.Numeric(precision=12, scale=2), server_default=sa.text('0'), nullable=False),
    sa.Column('net_amount', sa.Numeric(precision=12, scale=2), server_default=sa.text('0'), nullable=False),
    sa.Column('master_handover', sa.Numeric(precision=12, scale=2), server_default=sa.text('0'), nullable=False),
    sa.Column('ats_number', sa.String(length=50), nullable=True),
    sa.Column('call_center_name', sa.String(length=200), nullable=True),
    sa.Column('call_center_notes', sa.Text(), nullable=True),
    sa.Column('avito_chat_id', sa.String(length=100), nullable=True),
    sa.Column('completed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('created_by_id', sa.Integer(), nullable=True),
    sa.Column('version', sa.Integer(), server_default=sa.text('1'), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.CheckConstraint("status IN ('Новая', 'Ожидает', 'Ожидает принятия', 'Принял', 'В пути', 'В работе', 'Готово', 'Отказ', 'Модерн', 'НеЗаказ', 'Перезвонить', 'ТНО')", name=op.f('ck_requests_status')),
    sa.CheckConstraint('version > 0', name=op.f('ck_requests_version_positive')),
    sa.ForeignKeyConstraint(['advertising_campaign_id'], ['advertising_campaigns.id'], name=op.f('fk_requests_advertising_campaign_id_advertising_campaigns'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['city_id'], ['cities.id'], name=op.f('fk_requests_city_id_cities'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['created_by_id'], ['users.id'], name=op.f('fk_requests_created_by_id_users'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['direction_id'], ['directions.id'], name=op.f('fk_requests_direction_id_directions'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['master_id'], ['users.id'], name=op.f('fk_requests_master_id_users'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['request_type_id'], ['request_types.id'], name=op.f('fk_requests_request_type_id_request_types'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_requests'))
    )
    op.create_index(op.f('ix_requests_advertising_campaign_id'), 'requests', ['advertising_campaign_id'], unique=False)
    op.create_index(op.f('ix_requests_city_id'), 'requests', ['city_id'], unique=False)
    op.create_index('ix_requests_city_id_status_created_at', 'requests', ['city_id', 'status', sa.literal_column('created_at DESC')], unique=False)
    op.create_index('ix_requests_client_phone_created_at', 'requests', ['client_phone', sa.literal_column('created_at DESC')], unique=False)
    op.create_index('ix_requests_created_at', 'requests', [sa.literal_column('created_at DESC')], unique=False)
    op.create_index(op.f('ix_requests_direction_id'), 'requests', ['direction_id'], unique=False)
    op.create_index(op.f('ix_requests_master_id'), 'requests', ['master_id'], unique=False)
    op.create_index('ix_requests_master_id_status', 'requests', ['master_id', 'status'], unique=False)
    op.create_index(op.f('ix_requests_request_type_id'), 'requests', ['request_type_id'], unique=False)
    op.create_index(op.f('ix_requests_status'), 'requests', ['status'], unique=False)
    op.create_table('calls',
    sa.Column('id', sa.BigInteger(), nullable=False),
    sa.Column('entry_id', sa.String(length=128), nullable=False),
    sa.Column('direction', sa.String(length=10), server_default='unknown', nullable=False),
    sa.Column('line_number', sa.String(length=20), nullable=True),
    sa.Column('campaign_id', sa.Integer(), nullable=True),
    sa.Column('client_phone', sa.String(length=20), nullable=True),
    sa.Column('operator_extension', sa.String(length=20), nullable=True),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('answered_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('ended_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('talk_seconds', sa.Integer(), nullable=True),
    sa.Column('disconnect_reason', sa.Integer(), nullable=True),
    sa.Column('result', sa.String(length=50), nullable=True),
    sa.Column('missed', sa.Boolean(), nullable=True),
    sa.Column('last_seq', sa.Integer(), server_default=sa.text('0'), nullable=False),
    sa.Column('summary_received', sa.Boolean(), server_default=sa.text('false'), nullable=False),
    sa.Column('request_id', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.CheckConstraint("direction IN ('in', 'out', 'internal', 'unknown')", name=op.f('ck_calls_direction')),
    sa.ForeignKeyConstraint(['campaign_id'], ['advertising_campaigns.id'], name=op.f('fk_calls_campaign_id_advertising_campaigns'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['request_id'], ['requests.id'], name=op.f('fk_calls_request_id_requests'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_calls')),
    sa.UniqueConstraint('entry_id', name=op.f('uq_calls_entry_id'))
    )
    op.create_index(op.f('ix_calls_campaign_id'), 'calls', ['campaign_id'], unique=False)
    op.create_index('ix_calls_client_phone_started_at', 'calls', ['client_phone', 'started_at'], unique=False)
    op.create_index(op.f('ix_calls_line_number'), 'calls', ['line_number'], unique=False)
    op.create_index(op.f('ix_calls_request_id'), 'calls', ['request_id'], unique=False)
    op.create_index('ix_calls_started_at', 'calls', [sa.literal_column('started_at DESC')], unique=False)
    op.create_table('transactions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('city_id', sa.Integer(), nullable=False),
    sa.Column('transaction_type_id', sa.Integer(), nullable=False),
    sa.Column('amount', sa.Numeric(precision=12, scale=2), nullable=False),
    sa.Column('notes', sa.Text(), nullable=True),
    sa.Column('specified_date', sa.Date(), nullable=False),
    sa.Column('payment_reason', sa.Text(), nullable=True),
    sa.Column('request_id', sa.Integer(), nullable=True),
    sa.Column('created_by_id', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.ForeignKeyConstraint(['city_id'], ['cities.id'], name=op.f('fk_transactions_city_id_cities'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['created_by_id'], ['users.id'], name=op.f('fk_transactions_created_by_id_users'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['request_id'], ['requests.id'], name=op.f('fk_transactions_request_id_requests'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['transaction_type_id'], ['transaction_types.id'], name=op.f('fk_transactions_transaction_type_id_transaction_types'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_transactions'))
    )
    op.create_index('ix_transactions_city_id_specified_date', 'transactions', ['city_id', sa.literal_column('specified_date DESC')], unique=False)
    op.create_index('ix_transactions_created_at', 'transactions', [sa.literal_column('created_at DESC')], unique=False)
    op.create_index('ix_transactions_specified_date', 'transactions', [sa.literal_column('specified_date DESC')], unique=False)
    op.create_index(op.f('ix_transactions_transaction_type_id'), 'transactions', ['transaction_type_id'], unique=False)
    op.create_index('uq_transactions_request_id', 'transactions', ['request_id'], unique=True, postgresql_where=sa.text('request_id IS NOT NULL'))
    op.create_table('call_legs',
    sa.Column('id', sa.BigInteger(), nullable=False),
    sa.Column('call_pk', sa.BigInteger(), nullable=False),
    sa.Column('call_id', sa.String(length=128), nullable=False),
    sa.Column('from_number', sa.String(length=20), nullable=True),
    sa.Column('to_number', sa.String(length=20), nullable=True),
    sa.Column('extension', sa.String(length=20), nullable=True),
    sa.Column('state', sa.String(length=20), nullable=True),
    sa.Column('seq', sa.Integer(), server_default=sa.text('0'), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('connected_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('ended_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('disconnect_reason', sa.Integer(), nullable=True),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.ForeignKeyConstraint(['call_pk'], ['calls.id'], name=op.f('fk_call_legs_call_pk_calls'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_call_legs')),
    sa.UniqueConstraint('call_id', name=op.f('uq_call_legs_call_id'))
    )
    op.create_index(op.f('ix_call_legs_call_pk'), 'call_legs', ['call_pk'], unique=False)
    op.create_table('files',
    sa.Column('id', sa.BigInteger(), nullable=False),
    sa.Column('kind', sa.String(length=20), nullable=False),
    sa.Column('request_id', sa.Integer(), nullable=True),
    sa.Column('transaction_id', sa.Integer(), nullable=True),
    sa.Column('original_name', sa.String(length=255), nullable=False),
    sa.Column('size_bytes', sa.BigInteger(), nullable=True),
    sa.Column('sha256', sa.String(length=64), nullable=True),
    sa.Column('sniffed_type', sa.String(length=100), nullable=True),
    sa.Column('status', sa.String(length=20), server_default='pending', nullable=False),
    sa.Column('reject_reason', sa.Text(), nullable=True),
    sa.Column('quarantine_path', sa.String(length=500), nullable=True),
    sa.Column('storage_path', sa.String(length=500), nullable=True),
    sa.Column('replaced_by_id', sa.BigInteger(), nullable=True),
    sa.Column('uploaded_by_id', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('validated_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('owner_deleted_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint("kind IN ('bso', 'expense', 'recording', 'transaction')", name=op.f('ck_files_kind')),
    sa.CheckConstraint("status IN ('pending', 'ready', 'rejected')", name=op.f('ck_files_status')),
    sa.CheckConstraint('request_id IS NULL OR transaction_id IS NULL', name=op.f('ck_files_one_owner')),
    sa.ForeignKeyConstraint(['replaced_by_id'], ['files.id'], name=op.f('fk_files_replaced_by_id_files'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['request_id'], ['requests.id'], name=op.f('fk_files_request_id_requests'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['transaction_id'], ['transactions.id'], name=op.f('fk_files_transaction_id_transactions'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['uploaded_by_id'], ['users.id'], name=op.f('fk_files_uploaded_by_id_users'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_files')),
    sa.UniqueConstraint('storage_path', name=op.f('uq_files_storage_path'))
    )
    op.create_index('ix_files_pending_created_at', 'files', ['created_at'], unique=False, postgresql_where=sa.text("status = 'pending'"))
    op.create_index('ix_files_request_id_kind', 'files', ['request_id', 'kind'], unique=False)
    op.create_index('ix_files_sha256', 'files', ['sha256'], unique=False)
    op.create_index('ix_files_transaction_id_kind', 'files', ['transaction_id', 'kind'], unique=False)
    op.create_table('recordings',
    sa.Column('id', sa.BigInteger(), nullable=False),
    sa.Column('source', sa.String(length=10), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('storage_path', sa.String(length=500), nullable=False),
    sa.Column('original_name', sa.String(length=255), nullable=True),
    sa.Column('size_bytes', sa.BigInteger(), nullable=False),
    sa.Column('mime_type', sa.String(length=100), nullable=True),
    sa.Column('duration_seconds', sa.Integer(), nullable=True),
    sa.Column('call_time', sa.DateTime(timezone=True), nullable=True),
    sa.Column('from_phone', sa.String(length=20), nullable=True),
    sa.Column('to_phone', sa.String(length=20), nullable=True),
    sa.Column('message_id', sa.String(length=255), nullable=True),
    sa.Column('mango_recording_id', sa.String(length=255), nullable=True),
    sa.Column('match_status', sa.String(length=20), server_default='unmatched', nullable=False),
    sa.Column('match_attempts', sa.Integer(), server_default=sa.text('0'), nullable=False),
    sa.Column('matched_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('request_id', sa.Integer(), nullable=True),
    sa.Column('call_id', sa.BigInteger(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.CheckConstraint("match_status IN ('matched', 'unmatched', 'ambiguous')", name=op.f('ck_recordings_match_status')),
    sa.CheckConstraint("source IN ('imap', 'mango', 'upload')", name=op.f('ck_recordings_source')),
    sa.ForeignKeyConstraint(['call_id'], ['calls.id'], name=op.f('fk_recordings_call_id_calls'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['request_id'], ['requests.id'], name=op.f('fk_recordings_request_id_requests'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_recordings')),
    sa.UniqueConstraint('mango_recording_id', name=op.f('uq_recordings_mango_recording_id')),
    sa.UniqueConstraint('sha256', name=op.f('uq_recordings_sha256')),
    sa.UniqueConstraint('storage_path', name=op.f('uq_recordings_storage_path'))
    )
    op.create_index(op.f('ix_recordings_call_id'), 'recordings', ['call_id'], unique=False)
    op.create_index('ix_recordings_from_phone_call_time', 'recordings', ['from_phone', 'call_time'], unique=False)
    op.create_index(op.f('ix_recordings_request_id'), 'recordings', ['request_id'], unique=False)
    op.create_index('ix_recordings_to_phone_call_time', 'recordings', ['to_phone', 'call_time'], unique=False)
    op.create_index('ix_recordings_unmatched_call_time', 'recordings', ['call_time'], unique=False, postgresql_where=sa.text("match_status <> 'matched'"))

    _seed_lookups()


SEED_ROLES = ("admin", "director", "manager", "callcentr", "avitolog", "master")
SEED_REQUEST_TYPES = ("Впервые", "Повтор")
SEED_TRANSACTION_TYPES = ("Приход", "Расход")


def _seed_lookups() -> None:
    """Rows the code relies on by name: roles checked by auth, request types the telephony worker
    assigns, transaction types the income booking and the cash pages use."""
    for table, names in (
        ("roles", SEED_ROLES),
        ("request_types", SEED_REQUEST_TYPES),
        ("transaction_types", SEED_TRANSACTION_TYPES),
    ):
        lookup = sa.table(table, sa.column("name", sa.String))
        op.bulk_insert(lookup, [{"name": name} for name in names])

def downgrade() -> None:
    op.drop_index('ix_recordings_unmatched_call_time', table_name='recordings', postgresql_where=sa.text("match_status <> 'matched'"))
    op.drop_index('ix_recordings_to_phone_call_time', table_name='recordings')
    op.drop_index(op.f('ix_recordings_request_id'), table_name='recordings')
    op.drop_index('ix_recordings_from_phone_call_time', table_name='recordings')
    op.drop_index(op.f('ix_recordings_call_id'), table_name='recordings')
    op.drop_table('recordings')
    op.drop_index('ix_files_transaction_id_kind', table_name='files')
    op.drop_index('ix_files_sha256', table_name='files')
    op.drop_index('ix_files_request_id_kind', table_name='files')
    op.drop_index('ix_files_pending_created_at', table_name='files', postgresql_where=sa.text("status = 'pending'"))
    op.drop_table('files')
    op.drop_index(op.f('ix_call_legs_call_pk'), table_name='call_legs')
    op.drop_table('call_legs')
    op.drop_index('uq_transactions_request_id', table_name='transactions', postgresql_where=sa.text('request_id IS NOT NULL'))
    op.drop_index(op.f('ix_transactions_transaction_type_id'), table_name='transactions')
    op.drop_index('ix_transactions_specified_date', table_name='transactions')
    op.drop_index('ix_transactions_created_at', table_name='transactions')
    op.drop_index('ix_transactions_city_id_specified_date', table_name='transactions')
    op.drop_table('transactions')
    op.drop_index('ix_calls_started_at', table_name='calls')
    op.drop_index(op.f('ix_calls_request_id'), table_name='calls')
    op.drop_index(op.f('ix_calls_line_number'), table_name='calls')
    op.drop_index('ix_calls_client_phone_started_at', table_name='calls')
    op.drop_index(op.f('ix_calls_campaign_id'), table_name='calls')
    op.drop_table('calls')
    op.drop_index(op.f('ix_requests_status'), table_name='requests')
    op.drop_index(op.f('ix_requests_request_type_id'), table_name='requests')
    op.drop_index('ix_requests_master_id_status', table_name='requests')
    op.drop_index(op.f('ix_requests_master_id'), table_name='requests')
    op.drop_index(op.f('ix_requests_direction_id'), table_name='requests')
    op.drop_index('ix_requests_created_at', table_name='requests')
    op.drop_index('ix_requests_client_phone_created_at', table_name='requests')
    op.drop_index('ix_requests_city_id_status_created_at', table_name='requests')
    op.drop_index(op.f('ix_requests_city_id'), table_name='requests')
    op.drop_index(op.f('ix_requests_advertising_campaign_id'), table_name='requests')
    op.drop_table('requests')
    op.drop_index(op.f('ix_request_events_user_id'), table_name='request_events')
    op.drop_index('ix_request_events_request_id_id', table_name='request_events')
    op.drop_table('request_events')
    op.drop_index('ix_jobs_kind_status', table_name='jobs')
    op.drop_index('ix_jobs_created_at', table_name='jobs')
    op.drop_table('jobs')
    op.drop_index('uq_users_login_lower', table_name='users')
    op.drop_index('ix_users_role_id_city_id', table_name='users')
    op.drop_index(op.f('ix_users_role_id'), table_name='users')
    op.drop_index(op.f('ix_users_phone'), table_name='users')
    op.drop_index('ix_users_city_id_status', table_name='users')
    op.drop_index(op.f('ix_users_city_id'), table_name='users')
    op.drop_table('users')
    op.drop_index('uq_advertising_campaigns_active_phone', table_name='advertising_campaigns', postgresql_where=sa.text('is_active'))
    op.drop_index(op.f('ix_advertising_campaigns_phone'), table_name='advertising_campaigns')
    op.drop_index(op.f('ix_advertising_campaigns_city_id'), table_name='advertising_campaigns')
    op.drop_table('advertising_campaigns')
    op.drop_table('transaction_types')
    op.drop_table('roles')
    op.drop_table('request_types')
    op.drop_index('ix_mango_events_pending_received_at', table_name='mango_events', postgresql_where=sa.text("status = 'pending'"))
    op.drop_index('ix_mango_events_entry_id', table_name='mango_events')
    op.drop_table('mango_events')
    op.drop_table('mailbox_states')
    op.drop_table('directions')
    op.drop_table('cities')
    op.drop_index('uq_alerts_firing_rule', table_name='alerts', postgresql_where=sa.text("status = 'firing'"))
    op.drop_index('ix_alerts_fired_at', table_name='alerts')
    op.drop_table('alerts')
