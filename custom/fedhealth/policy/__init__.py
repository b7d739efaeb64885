"""Site policies: privacy-scope math on model updates and the policy files a site kit carries."""
