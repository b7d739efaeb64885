"""Provisioning builders (run by ``nvflare provision`` / ``nvflare poc prepare -i provision/poc.yml``)."""
