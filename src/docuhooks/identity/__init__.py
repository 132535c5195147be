"""Sites, users, roles and API tokens: who is calling, for which site, with which rights."""
