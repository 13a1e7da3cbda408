"""Rules more than one service needs (the Bookkeeping Act's retention), so no service imports another's."""
