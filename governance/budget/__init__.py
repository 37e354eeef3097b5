"""Budget domain core: ledger, cost model and reports. Imports neither kopf nor kubernetes."""
