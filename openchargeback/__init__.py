"""OpenChargeback: chargeback and showback billing for research computing."""
