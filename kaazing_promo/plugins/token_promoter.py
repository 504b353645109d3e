from kaazing_promo.promotion import PromoterFactory
from kaazing_promo.token.tokens import TokenPromoter

token = PromoterFactory("token", TokenPromoter)
