from twisted.application.service import ServiceMaker

KaazingPromo = ServiceMaker(
    "kaazing-promo", "kaazing_promo.tap", "An identity-promoting AMQP 0-9-1 gateway", "kaazing-promo")
