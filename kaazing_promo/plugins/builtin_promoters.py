from kaazing_promo.promotion import (
    ConsolidatedPromoter, IdentityPromoter, MappingPromoter, PassthroughPromoter, PromoterFactory)

passthrough = PromoterFactory("passthrough", PassthroughPromoter)
identity = PromoterFactory("identity", IdentityPromoter)
mapping = PromoterFactory("mapping", MappingPromoter)
consolidated = PromoterFactory("consolidated", ConsolidatedPromoter)
