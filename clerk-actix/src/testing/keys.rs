//! RSA key pairs for tests only. Never use them for anything real: the private halves are public.
//!
//! The first is Clerk's own public test key pair (`pemEncodedSignKey` in Clerk's JS SDK fixtures,
//! kid `ins_2GIoQhbUpy0hX7B2cVkuTMinXoD`), so tokens minted by `MockClerk` verify against the
//! same JWKS that Clerk's SDK tests use. The others exist for key-rotation tests.

/// One RSA key pair with its JWK modulus, for tests.
#[derive(Debug, Clone, Copy)]
pub struct TestKey {
    /// The `kid` under which the key is published.
    pub kid: &'static str,
    /// PKCS#8 private key, PEM.
    pub private_pem: &'static str,
    /// SPKI public key, PEM.
    pub public_pem: &'static str,
    /// JWK `n` (base64url, no padding).
    pub n: &'static str,
    /// JWK `e` (base64url, no padding).
    pub e: &'static str,
}

/// The key pairs `MockClerk` rotates through, in order.
pub const TEST_KEYS: [TestKey; 3] = [
    TestKey {
        kid: "ins_2GIoQhbUpy0hX7B2cVkuTMinXoD",
        private_pem: include_str!("keys/clerk_test.pem"),
        public_pem: include_str!("keys/clerk_test.pub.pem"),
        n: "qYy3MY8fOneEyzNDu9lp6iGXKkNUF-u_dUnrlkadZYyB35efzKFJEr9fftmWv5PUj1uRHTQ3bh6X1cceOYsIjy008dHWZJsKhGOxgdTjeK91rjaklxt7tyFXEiKHIOr1LSgKzopClOfCIjxK_oPUOf38pVh7WnekcSBQmU5fqA-EzKMi6k9VwvbzqKlZM4XQsiFyn28d9VubJWjTU8nNot0n1NE-9k6TxM8nglM4RwkBH4Ni4B0LhKKOOV-AG8tBNiZVil415dpBldmJ_j0wk7Ad4VFi9en3Z17oCKr-K-zuT7vKMKSb1548dk0vnmi0vj2QGXSo-61wM5yQWpk6sQ",
        e: "AQAB",
    },
    TestKey {
        kid: "ins_mock2RotatedKeyA1b2C3d4E5f6",
        private_pem: include_str!("keys/mock_2.pem"),
        public_pem: include_str!("keys/mock_2.pub.pem"),
        n: "0e0BggutMfih18mNsA-_nr81vbPySzsXH8SpmoWUP5KeVwr32OAutn7kocEi2ylgOShTtTptM9ICgI0oq_f03QQFVfqUQxn25bhiGV0aNdf7JqpPHwd9Pv9I4dOUFLAvETFV4I2Nb2ppCnDFnAK4ELyUKgywil58A6BHFQjdXj25qyZ2qTfP1oFu-IjnADjSxbdSThdHC895Fw6xuP67rZvrfNpJCSF-qIZLyx7vrOFB25cK1A_JtsPZ10w9dLSQecz64oxyGfzxUCsFxQY4-ITIxMujfmzZlZHzUo-SUt1LcgYlTe1wUu30lSd_A0PiLSakP3Nh94-bPNHJzjWdLQ",
        e: "AQAB",
    },
    TestKey {
        kid: "ins_mock3RotatedKeyZ9y8X7w6V5u4",
        private_pem: include_str!("keys/mock_3.pem"),
        public_pem: include_str!("keys/mock_3.pub.pem"),
        n: "1w1addcoPbyr4ZH7Vry20tvM4ShSf0KXepXMcnVrXP9FUvvTwWh2_vVlPe4s1A1fUtpq-ETnqImITkRv2BkzIOiLC257c10pGW0G3wUDtn3QMjPoegnRSkIc75zTbbC4Jxa0LCUKuaGON7aCGVEncC_AWIUI9eBZ1wURWYA4sjMllIQWvY5pG4jAwjU3WVOt8GdK8evEf4cdvMnfGrdJo1WeB_4wVsHRwH2anIGUoRDaoTnvtihvRoNjEDWO9WvdwMXuSUEAJQ0pC9-NcN9BIksIZI1HKtIPH3F2mjP7E04CWJW0mLgVsnPl7I1ZwzAcZ50MgdFbbxTR0kSZJvKxnw",
        e: "AQAB",
    },
];
