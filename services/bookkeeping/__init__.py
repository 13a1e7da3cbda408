"""bookkeeping: customers and sales forwarded to Visma eAccounting, kept as long as the Bookkeeping Act says."""
