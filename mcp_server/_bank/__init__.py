"""The bank: database models and engine, money rules, the bank service, errors and demo data."""
