"""newsletter: subscribes consenting buyers at Mailchimp and permanently erases them there on request."""
