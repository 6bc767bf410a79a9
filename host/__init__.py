"""The settlement host as the medical-insurance platform: its numbered transactions
(host/platform.py) over SQLite or PostgreSQL, in process or over HTTP (`pos-host
serve`), and the desk's commands (loss reports S18, balances, reconciliation).
docs/host.md says what it does. Never imports textual.
"""
