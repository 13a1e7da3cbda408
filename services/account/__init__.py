"""The account slice: users, mail-dispatch preferences, sign-in sessions and devices, erased on request."""
