"""The settlement host: holders' personal accounts, payments, loss reports (S18).

Behind a small interface (`host.api.SettlementHost`), so a networked host can
replace the embedded SQLite one later. Never imports textual.
"""
