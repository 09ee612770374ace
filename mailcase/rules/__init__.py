"""2. The rules: small pure rules, their order one table (chain.py), and the classify stage that applies them."""
