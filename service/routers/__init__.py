"""HTTP routers, one per topic; handlers validate, call a domain function and respond."""
