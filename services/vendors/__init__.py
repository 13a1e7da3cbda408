"""HTTP and SMTP clients for the outside systems personal data goes to, one module per vendor."""
