from kaazing_promo.promotion import (
    ConsolidatedPromoter, IdentityPromoter, MappingPromoter, PassthroughPromoter, PromoterFactory)

passthrough = PromoterFactory("passthrough", PassthroughPromoter, anonymous="only")
identity = PromoterFactory("identity", IdentityPromoter)
mapping = PromoterFactory("mapping", MappingPromoter, required={
    "map": 'is empty in mapping mode; add "gateway.user" = "broker_user" lines'})
consolidated = PromoterFactory("consolidated", ConsolidatedPromoter, anonymous="allowed", required={
    "user": "is required in consolidated mode; name the one broker account"})
