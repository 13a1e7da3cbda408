"""payment: references of online (PayPal) payments, and the erasure of what PayPal holds for a user."""
