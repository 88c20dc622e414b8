-- History tables, each partitioned by day on `ts` (declarative range partitioning): retention drops whole
-- partitions. Partitions are created by the hub as days come (plugins/history.ts), named <table>_pYYYYMMDD.
-- Numbers are double precision: the hub holds them as doubles already (see src/history/rows.ts).

CREATE TABLE IF NOT EXISTS history_market_data (
  ts timestamptz NOT NULL,
  symbol text NOT NULL,
  open double precision NOT NULL,
  high double precision NOT NULL,
  low double precision NOT NULL,
  close double precision NOT NULL,
  bid double precision,
  ask double precision,
  updates integer NOT NULL,
  PRIMARY KEY (symbol, ts)
) PARTITION BY RANGE (ts);

CREATE TABLE IF NOT EXISTS history_trades (
  ts timestamptz NOT NULL,
  symbol text NOT NULL,
  trade_id text NOT NULL,
  price double precision NOT NULL,
  quantity double precision NOT NULL,
  side text,
  PRIMARY KEY (symbol, ts, trade_id)
) PARTITION BY RANGE (ts);

CREATE TABLE IF NOT EXISTS history_fills (
  ts timestamptz NOT NULL,
  symbol text NOT NULL,
  fill_id text NOT NULL,
  order_id text,
  side text,
  price double precision NOT NULL,
  quantity double precision NOT NULL,
  fee double precision,
  pnl double precision,
  PRIMARY KEY (symbol, ts, fill_id)
) PARTITION BY RANGE (ts);
CREATE INDEX IF NOT EXISTS history_fills_ts ON history_fills (ts);

CREATE TABLE IF NOT EXISTS history_order_events (
  ts timestamptz NOT NULL,
  order_id text NOT NULL,
  symbol text NOT NULL,
  state text NOT NULL,
  side text,
  type text,
  price double precision,
  quantity double precision,
  filled_quantity double precision NOT NULL,
  average_price double precision,
  -- The lifecycle's order (NEW < SUBMITTED < PARTIALLY_FILLED < terminal): one order may have several events at
  -- one time (a poll carries whole seconds), and they are listed, and paged, in this order.
  state_rank smallint GENERATED ALWAYS AS (
    CASE state WHEN 'NEW' THEN 0 WHEN 'PENDING' THEN 0 WHEN 'SUBMITTED' THEN 1 WHEN 'PARTIALLY_FILLED' THEN 2 ELSE 3 END
  ) STORED,
  PRIMARY KEY (order_id, ts, state, filled_quantity)
) PARTITION BY RANGE (ts);
CREATE INDEX IF NOT EXISTS history_order_events_symbol_ts ON history_order_events (symbol, ts);
CREATE INDEX IF NOT EXISTS history_order_events_ts ON history_order_events (ts);

CREATE TABLE IF NOT EXISTS history_account (
  ts timestamptz NOT NULL,
  total_balance double precision,
  equity double precision,
  unrealized_pnl double precision,
  PRIMARY KEY (ts)
) PARTITION BY RANGE (ts);

CREATE TABLE IF NOT EXISTS history_alerts (
  ts timestamptz NOT NULL,
  id text NOT NULL,
  source text NOT NULL,
  type text NOT NULL,
  severity text NOT NULL,
  symbol text,
  message text NOT NULL,
  value double precision,
  threshold double precision,
  PRIMARY KEY (ts, id)
) PARTITION BY RANGE (ts);
CREATE INDEX IF NOT EXISTS history_alerts_severity_ts ON history_alerts (severity, ts);
