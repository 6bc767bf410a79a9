"""The standard's security algorithms (cardio/security.py) against part 4 and part 9 §7.

Each test names the part and section it proves. Known answers are worked from the text
step by step with only the raw block cipher (`des`, `des_d`, `sm4` below: one block of
`cryptography` in ECB) and XOR; every intermediate value is written out so a reader can
follow the figure. The module must then give the final value. Values from a second,
independent computation under the same readings are checked on the way.
"""

from __future__ import annotations

import subprocess
import sys
import warnings

import pytest
from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from cardio import security
from cardio.errors import CardioError, Exit
from cardio.model import Algorithm
from cardio.security import (
    CryptogramError,
    SecurityInputError,
    UnsupportedAlgorithmError,
)

DES, SM4, SSF33 = Algorithm.DES, Algorithm.SM4, Algorithm.SSF33


def h(text: str) -> bytes:
    return bytes.fromhex(text)


def _one_block(algorithm: algorithms.SM4 | TripleDES, block: bytes, decrypt: bool) -> bytes:
    cipher = Cipher(algorithm, modes.ECB())
    context = cipher.decryptor() if decrypt else cipher.encryptor()
    return context.update(block) + context.finalize()


def des(key8: bytes, block8: bytes) -> bytes:
    """Single DES, one block: TripleDES with K||K||K (EDE with one key)."""
    assert len(key8) == 8 and len(block8) == 8
    return _one_block(TripleDES(key8 * 3), block8, decrypt=False)


def des_d(key8: bytes, block8: bytes) -> bytes:
    assert len(key8) == 8 and len(block8) == 8
    return _one_block(TripleDES(key8 * 3), block8, decrypt=True)


def sm4(key16: bytes, block16: bytes) -> bytes:
    assert len(key16) == 16 and len(block16) == 16
    return _one_block(algorithms.SM4(key16), block16, decrypt=False)


def xor(a: bytes, b: bytes) -> bytes:
    assert len(a) == len(b)
    return bytes(x ^ y for x, y in zip(a, b, strict=True))


# The §10.3 inputs: a national root MK, city 511900, the reader API §8.20 ATR.
MK = h("0123456789abcdeffedcba9876543210")
KL, KR = MK[:8], MK[8:]
IDENT_511900 = h("511900 D156000005 00000001 00000000")
ATR_8_20 = h("3B 6D 00 00 00 81 48 42 42 86 53 51 19 00 0A 67 1A")  # reader API §8.20
HIST_8_20 = ATR_8_20[4:]  # T0 = 6D: TB1 and TC1 follow, then the 13 historical bytes
F1 = h("3531303030307368")  # "510000sh"
F2 = h("3531313930307378")  # "511900sx"
F3 = h("86535119000A671A")
# The card keys of §10.3 (three steps from MK), and their session keys for R = 11223344.
CARD_DES = h("11f89b30642faca39d7f5e17edd3d9ae")
CARD_SM4 = h("d08d05577125c9087f0ec5b401e752f8")
R4 = h("11223344")
KS_DES = h("a066128fad371112")
KS_SM4 = h("df3def762c6dbed2e790674e9db5e64a")


# --- the ciphers themselves ----------------------------------------------------------


def test_gbt_32907_appendix_a_sm4_vector():
    key = h("0123456789abcdeffedcba9876543210")
    assert sm4(key, key) == h("681edf34d206965e86b3e94f536e4246")
    assert security.encrypt_block(SM4, key, key) == h("681edf34d206965e86b3e94f536e4246")
    assert security.decrypt_block(SM4, key, h("681edf34d206965e86b3e94f536e4246")) == key


def test_fips_81_des_vector():
    key, plain = h("0123456789abcdef"), h("4e6f772069732074")  # "Now is t"
    assert des(key, plain) == h("3fa40e8a984d4815")
    assert security.encrypt_block(DES, key, plain) == h("3fa40e8a984d4815")
    assert security.decrypt_block(DES, key, h("3fa40e8a984d4815")) == plain


def test_p4_8_4_1_fig_8_double_length_key_is_e_kl_d_kr_e_kl():
    block = h("1122334400000000")
    assert des(KL, block) == h("4b4a726529a8f834")  # E with KL
    assert des_d(KR, h("4b4a726529a8f834")) == h("f875efd148084d5d")  # D with KR
    assert des(KL, h("f875efd148084d5d")) == h("0b5a6fe8735d479e")  # E with KL
    assert security.encrypt_block(DES, MK, block) == h("0b5a6fe8735d479e")
    assert security.decrypt_block(DES, MK, h("0b5a6fe8735d479e")) == block


def test_p4_block_sizes():
    assert security.block_size(DES) == 8
    assert security.block_size(SM4) == 16


def test_des_warns_nothing_for_8_and_16_byte_keys():
    # 24-byte TripleDES keys only: the 8/16-byte forms raise CryptographyDeprecationWarning.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        security.encrypt_block(DES, KL, bytes(8))
        security.encrypt_block(DES, MK, bytes(8))
        security.mac(DES, KS_DES, b"\x84")


def test_importing_the_module_does_not_import_cryptography():
    # The app's start-up time is benchmarked: cryptography loads on first use only.
    code = "import sys, cardio.security; print('cryptography' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# --- part 9 §7.1.1 / §7.2.1: one dispersion step -------------------------------------


def test_p9_7_1_1_fig_2_single_length_dispersion_is_des_of_the_factor():
    master = h("0123456789abcdef")
    assert des(master, F3) == h("3e190882de159136")
    assert security.disperse(DES, master, F3) == h("3e190882de159136")  # worked independently


def test_p9_7_1_1_fig_3_double_length_dispersion_is_3des_f_and_3des_not_f():
    # DKL = E_KL(D_KR(E_KL(F)))
    assert des(KL, F3) == h("3e190882de159136")
    assert des_d(KR, h("3e190882de159136")) == h("27a36391713b3936")
    assert des(KL, h("27a36391713b3936")) == h("520dc227f45b480a")
    # DKR from ~F (求反: every byte complemented)
    not_f3 = h("79acaee6fff598e5")
    assert xor(F3, h("ff" * 8)) == not_f3
    assert des(KL, not_f3) == h("693f48b627ab68cc")
    assert des_d(KR, h("693f48b627ab68cc")) == h("62469f9b89b2293d")
    assert des(KL, h("62469f9b89b2293d")) == h("11e760485e370702")
    child = security.disperse(DES, MK, F3)
    assert child == h("520dc227f45b480a 11e760485e370702")


def test_p9_7_2_1_fig_8_sm4_dispersion_encrypts_f_then_not_f():
    block = h("86535119000A671A 79acaee6fff598e5")  # F high, ~F low
    assert sm4(MK, block) == h("40ac9ca394e3ef4bf0293bab7304a2e6")
    assert security.disperse(SM4, MK, F3) == h("40ac9ca394e3ef4bf0293bab7304a2e6")


# --- part 9 §7.3: the factors and the chain -------------------------------------------


def test_p9_7_3_1_and_7_3_2_factors_of_650100():
    ident = h("650100 D156000005 00000001 00000000")
    province, city, _ = security.dispersion_factors(ident, HIST_8_20)
    assert province == h("36 35 30 30 30 30 73 68") == b"650000sh"
    assert city == h("36 35 30 31 30 30 73 78") == b"650100sx"


def test_p9_7_3_3_card_factor_is_t6_to_td_of_the_reader_api_8_20_atr():
    assert ATR_8_20[1] == 0x6D and len(HIST_8_20) == 13
    *_, card = security.dispersion_factors(IDENT_511900, HIST_8_20)
    assert card == h("86535119000A671A")  # T6 T7 = 86 53, T8 T9 = 51 19 (city 5119..)


def test_p9_7_3_factors_of_the_10_3_inputs():
    assert security.dispersion_factors(IDENT_511900, HIST_8_20) == (F1, F2, F3)
    assert (F1, F2) == (b"510000sh", b"511900sx")


def test_reader_api_10_3_zhejiang_city_factor_keeps_four_digits():
    ident = h("330106 D156000005 00000001 00000000")  # a district of Hangzhou
    province, city, _ = security.dispersion_factors(ident, HIST_8_20)
    assert province == b"330000sh"
    assert city == h("33 33 30 31 30 30 73 78") == b"330100sx"
    _, national, _ = security.dispersion_factors(ident, HIST_8_20, zhejiang_rule=False)
    assert national == b"330106sx"  # part 9 §7.3.2 as written


def test_p9_7_3_fig_12_chain_province_city_card_des():
    k1 = security.disperse(DES, MK, F1)
    assert k1 == h("1ece88d67b41fda68dd49246736851ae")
    k2 = security.disperse(DES, k1, F2)
    assert k2 == h("68713e5a33b045911bf6f2ec8af0eef9")
    k3 = security.disperse(DES, k2, F3)
    assert k3 == CARD_DES
    assert security.disperse_chain(DES, MK, [F1, F2, F3]) == CARD_DES
    assert security.card_key(DES, MK, IDENT_511900, HIST_8_20) == CARD_DES


def test_p9_7_3_fig_12_chain_province_city_card_sm4():
    k1 = security.disperse(SM4, MK, F1)
    assert k1 == h("79afe3b9faa8b47c0695efd6907cb8d5")
    k2 = security.disperse(SM4, k1, F2)
    assert k2 == h("c996805ff8ed90c7619659b73af8a45a")
    assert security.disperse(SM4, k2, F3) == CARD_SM4
    assert security.card_key(SM4, MK, IDENT_511900, HIST_8_20) == CARD_SM4


def test_p9_7_3_no_factor_leaves_the_key():
    assert security.disperse_chain(SM4, MK, []) == MK


# --- part 4 §8.4: session keys ---------------------------------------------------------


def test_p4_8_4_1_fig_7_single_length_key_4_byte_random():
    key = h("0123456789abcdef")
    padded = h("1122334400000000")  # 4-byte random, 00 00 00 00 on the right
    assert des(key, padded) == h("4b4a726529a8f834")
    assert security.session_key(DES, key, R4) == h("4b4a726529a8f834")


def test_p4_8_4_1_fig_8_double_length_key_4_byte_random():
    padded = h("1122334400000000")
    assert des(CARD_DES[:8], padded) == h("c56941a40af508c2")
    assert des_d(CARD_DES[8:], h("c56941a40af508c2")) == h("70799138d6416620")
    assert des(CARD_DES[:8], h("70799138d6416620")) == KS_DES
    ks = security.session_key(DES, CARD_DES, R4)
    assert ks == KS_DES and len(ks) == 8  # single length (单长度过程密钥)


def test_p4_8_4_1_8_byte_random_is_used_as_is():
    r8 = h("0102030405060708")
    expected = des(CARD_DES[:8], des_d(CARD_DES[8:], des(CARD_DES[:8], r8)))
    assert security.session_key(DES, CARD_DES, r8) == expected == h("b1ef0ba97cf1bb83")


def test_p4_8_4_2_fig_9_sm4_4_byte_random_plus_12_zeros():
    assert sm4(CARD_SM4, h("11223344" + "00" * 12)) == KS_SM4
    assert security.session_key(SM4, CARD_SM4, R4) == KS_SM4


def test_p4_8_4_2_fig_9_sm4_8_byte_random_plus_8_zeros():
    padded = h("1122334455667788 0000000000000000")
    assert sm4(CARD_SM4, padded) == h("bdb1352caf0524a663e4ebddff6f0d8b")
    got = security.session_key(SM4, CARD_SM4, h("1122334455667788"))
    assert got == h("bdb1352caf0524a663e4ebddff6f0d8b")


def test_p4_8_4_2_fig_9_sm4_16_byte_random_as_is():
    r16 = h("112233445566778899aabbccddeeff00")
    assert sm4(CARD_SM4, r16) == h("af5d5e99396a67e2610f668ee6c45bf3")
    assert security.session_key(SM4, CARD_SM4, r16) == h("af5d5e99396a67e2610f668ee6c45bf3")


# --- part 4 §8.2.4: MAC ----------------------------------------------------------------


def test_p4_8_2_4_1_des_mac_of_application_block_header():
    # D = 84 1E 00 01 04 (Lc counts the MAC, footnote 1); padding 80 00 00 to 8 bytes.
    assert security.mac_padding(DES, h("841E000104")) == h("841E000104800000")
    o1 = des(KS_DES, xor(bytes(8), h("841E000104800000")))  # IV = 00*8
    assert o1 == h("bfc416b50aff2cb6")
    assert security.mac(DES, KS_DES, h("841E000104")) == h("bfc416b5")  # left 4 bytes


def test_p4_8_2_4_1_des_mac_aligned_message_gets_a_whole_padding_block():
    data = h("0102030405060708 090a0b0c0d0e0f10")
    assert security.mac_padding(DES, data) == data + h("8000000000000000")
    o1 = des(KS_DES, h("0102030405060708"))
    assert o1 == h("920225d8fde6058e")
    i2 = xor(o1, h("090a0b0c0d0e0f10"))
    assert i2 == h("9b082ed4f0e80a9e")
    o2 = des(KS_DES, i2)
    assert o2 == h("5986392036edd9f1")
    i3 = xor(o2, h("8000000000000000"))
    assert i3 == h("d986392036edd9f1")
    o3 = des(KS_DES, i3)
    assert o3 == h("73cfa279803f4ac7")
    assert security.mac(DES, KS_DES, data) == h("73cfa279")


def test_p4_8_2_4_2_sm4_mac_of_application_block_header_folds_four_pieces():
    padded = h("841E000104 80 00000000000000000000")
    assert security.mac_padding(SM4, h("841E000104")) == padded
    o1 = sm4(KS_SM4, padded)
    assert o1 == h("ded20fcc2e4fb414bca43265a8683086")
    # Step 6: the 16-byte result XORed in 4-byte pieces.
    fold = xor(xor(xor(h("ded20fcc"), h("2e4fb414")), h("bca43265")), h("a8683086"))
    assert fold == h("e451b93b")
    assert security.mac(SM4, KS_SM4, h("841E000104")) == h("e451b93b")


def test_p4_8_2_4_2_sm4_mac_aligned_message_gets_a_whole_padding_block():
    data = h("0102030405060708090a0b0c0d0e0f10")
    assert security.mac_padding(SM4, data) == data + h("80" + "00" * 15)
    o1 = sm4(KS_SM4, data)
    assert o1 == h("c912d268d45a010c6b66489ba8e5a395")
    i2 = xor(o1, h("80" + "00" * 15))
    assert i2 == h("4912d268d45a010c6b66489ba8e5a395")
    o2 = sm4(KS_SM4, i2)
    assert o2 == h("5bcebc498e741161d0aaba97867e30bb")
    fold = xor(xor(xor(h("5bcebc49"), h("8e741161")), h("d0aaba97")), h("867e30bb"))
    assert fold == h("836e2704")
    assert security.mac(SM4, KS_SM4, data) == h("836e2704")


# --- part 9 §9.8: CIPHER DATA's MAC, the first block an initial value ---------------------


def test_p9_9_8_des_mac_with_iv_chains_from_the_given_block():
    iv = h("1122334455667788")
    i1 = xor(iv, h("841E000104800000"))  # the terminal padded; the PSAM only chains
    assert i1 == h("953c334551e67788")
    o1 = des(KS_DES, i1)
    assert o1 == h("f22f66011cd5798b")
    assert security.mac_with_iv(DES, KS_DES, iv, h("841E000104800000")) == h("f22f6601")


def test_p9_9_8_sm4_mac_with_iv_folds_the_last_block():
    iv = h("00112233445566778899aabbccddeeff")
    padded = h("841E000104 80 00000000000000000000")
    o1 = sm4(KS_SM4, xor(iv, padded))
    assert o1 == h("600ce276480decaa13b03b1330702ba6")
    fold = xor(xor(xor(h("600ce276"), h("480decaa")), h("13b03b13")), h("30702ba6"))
    assert fold == h("0bc11e69")
    assert security.mac_with_iv(SM4, KS_SM4, iv, padded) == h("0bc11e69")


@pytest.mark.parametrize(("alg", "ks"), [(DES, KS_DES), (SM4, KS_SM4)])
@pytest.mark.parametrize("size", [0, 5, 8, 16, 29])
def test_p9_9_8_mac_with_a_zero_iv_over_padded_data_is_the_part_4_mac(alg, ks, size):
    data = bytes(range(1, size + 1))
    zero = bytes(security.block_size(alg))
    padded = security.mac_padding(alg, data)
    assert security.mac_with_iv(alg, ks, zero, padded) == security.mac(alg, ks, data)


@pytest.mark.parametrize(("alg", "ks"), [(DES, KS_DES), (SM4, KS_SM4)])
def test_p9_9_8_mac_with_iv_refuses_a_wrong_iv_or_unpadded_data(alg, ks):
    size = security.block_size(alg)
    with pytest.raises(SecurityInputError, match="initial value"):
        security.mac_with_iv(alg, ks, bytes(size - 1), bytes(size))
    for data in (b"", bytes(size + 1)):
        with pytest.raises(SecurityInputError, match="whole"):
            security.mac_with_iv(alg, ks, bytes(size), data)
    with pytest.raises(SecurityInputError, match="session key"):
        security.mac_with_iv(alg, ks + b"\x00", bytes(size), bytes(size))


@pytest.mark.parametrize(("alg", "ks"), [(DES, KS_DES), (SM4, KS_SM4)])
def test_p4_8_2_4_mac_changes_when_any_input_byte_flips(alg, ks):
    data = bytes(range(1, 30))
    reference = security.mac(alg, ks, data)
    for i in range(len(data)):
        flipped = data[:i] + bytes((data[i] ^ 0xFF,)) + data[i + 1 :]
        assert security.mac(alg, ks, flipped) != reference, i
    for i in range(len(ks)):
        other = ks[:i] + bytes((ks[i] ^ 0xFF,)) + ks[i + 1 :]
        assert security.mac(alg, other, data) != reference, i
    assert security.mac(alg, ks, data + b"\x00") != reference  # padding is unambiguous
    assert security.mac(alg, ks, data + b"\x80") != reference


# --- part 4 §8.3: encryption -----------------------------------------------------------


def test_p4_8_3_3_1_des_not_aligned_is_padded_80_00():
    # The PIN 123456 block of PIN CHANGE/UNBLOCK: LD 03, 12 34 56, 80 00 00 00.
    assert des(KS_DES, h("0312345680000000")) == h("5ffbd0b085136b2f")
    assert security.encrypt(DES, KS_DES, h("123456")) == h("5ffbd0b085136b2f")
    assert security.decrypt(DES, KS_DES, h("5ffbd0b085136b2f")) == h("123456")


def test_p4_8_3_3_1_des_aligned_gets_no_padding():
    plain = h("a1a2a3a4a5a6a7")  # LD 07 + 7 bytes = exactly one block: nothing added
    assert des(KS_DES, h("07a1a2a3a4a5a6a7")) == h("9d8e9e359bf93b6e")
    assert security.encrypt(DES, KS_DES, plain) == h("9d8e9e359bf93b6e")
    assert security.decrypt(DES, KS_DES, h("9d8e9e359bf93b6e")) == plain


def test_p4_8_3_3_1_des_two_blocks_each_encrypted_alone():
    plain = h("a1a2a3a4a5a6a7a8a9")  # 9 bytes: D1 = 09 a1..a7, D2 = a8 a9 80 00 00 00 00 00
    assert des(KS_DES, h("09a1a2a3a4a5a6a7")) == h("2887868a5cc89ee5")
    assert des(KS_DES, h("a8a9800000000000")) == h("e5dac32ae6ebf255")
    expected = h("2887868a5cc89ee5 e5dac32ae6ebf255")
    assert security.encrypt(DES, KS_DES, plain) == expected
    assert security.decrypt(DES, KS_DES, expected) == plain


def test_p4_8_3_3_2_sm4_not_aligned_is_padded_80_00():
    block = h("03123456 80 0000000000000000000000")
    assert sm4(KS_SM4, block) == h("58d6beb382a87d5ee50f54c5287e31ab")
    assert security.encrypt(SM4, KS_SM4, h("123456")) == h("58d6beb382a87d5ee50f54c5287e31ab")
    assert security.decrypt(SM4, KS_SM4, h("58d6beb382a87d5ee50f54c5287e31ab")) == h("123456")


def test_p4_8_3_3_2_sm4_aligned_gets_no_padding():
    plain = h("a1a2a3a4a5a6a7a8a9aaabacadaeaf")  # LD 0F + 15 bytes = one block
    assert sm4(KS_SM4, h("0f") + plain) == h("9535457ef9fa8d8a7dc3c38af7b86d31")
    assert security.encrypt(SM4, KS_SM4, plain) == h("9535457ef9fa8d8a7dc3c38af7b86d31")
    assert security.decrypt(SM4, KS_SM4, h("9535457ef9fa8d8a7dc3c38af7b86d31")) == plain


@pytest.mark.parametrize(("alg", "ks"), [(DES, KS_DES), (SM4, KS_SM4)])
def test_p4_8_3_4_decrypt_inverts_encrypt_for_1_to_40_bytes(alg, ks):
    for length in range(1, 41):
        plain = bytes((length * 7 + i) & 0xFF for i in range(length))
        cryptogram = security.encrypt(alg, ks, plain)
        assert len(cryptogram) % security.block_size(alg) == 0
        assert security.decrypt(alg, ks, cryptogram) == plain, length


def test_p4_8_3_3_1_des_allows_an_empty_plaintext():
    # Part 5 §6.8.3: an encrypted PIN of length zero clears the PIN; only §8.3.3.2 says LD >= 1.
    assert security.encrypt(DES, KS_DES, b"") == des(KS_DES, h("0080000000000000"))
    assert security.decrypt(DES, KS_DES, security.encrypt(DES, KS_DES, b"")) == b""


# --- part 4 §9.3: authentication ---------------------------------------------------------


def test_p4_9_3_1_des_auth_data_is_des_of_the_raw_data():
    raw = h("1112131415161718")
    assert des(KS_DES, raw) == h("61a5c8ff61296398")
    assert security.auth_data(DES, KS_DES, raw) == h("61a5c8ff61296398")


def test_p4_9_3_2_sm4_auth_data_folds_left_and_right():
    raw = h("1112131415161718")
    y = sm4(KS_SM4, raw + h("0000000000000000"))
    assert y == h("9e2299fb7ed85eec 68057bbd5116e0c1")
    assert xor(h("9e2299fb7ed85eec"), h("68057bbd5116e0c1")) == h("f627e2462fcebe2d")
    assert security.auth_data(SM4, KS_SM4, raw) == h("f627e2462fcebe2d")


def test_p4_9_2_internal_authenticate_des_answer():
    # Part 5 §6.7: R1 is the session-key input, R2 the raw data (docs/security.md).
    r1, r2 = h("0102030405060708"), h("1112131415161718")
    ks = h("b1ef0ba97cf1bb83")
    assert des(CARD_DES[:8], des_d(CARD_DES[8:], des(CARD_DES[:8], r1))) == ks
    assert des(ks, r2) == h("a213033f2975f035")
    assert security.authentication(DES, CARD_DES, r1, r2) == h("a213033f2975f035")


def test_p4_9_2_internal_authenticate_sm4_answer():
    r1, r2 = h("0102030405060708"), h("1112131415161718")
    ks = sm4(CARD_SM4, r1 + bytes(8))
    assert ks == h("bcc789b7a5cf87d0e099abb7671d821b")
    y = sm4(ks, r2 + bytes(8))
    assert y == h("82d2ea4111494c5a a84d4ccbdeb7f2ad")
    assert xor(h("82d2ea4111494c5a"), h("a84d4ccbdeb7f2ad")) == h("2a9fa68acffebef7")
    assert security.authentication(SM4, CARD_SM4, r1, r2) == h("2a9fa68acffebef7")


# --- part 4 §8.5 / part 5 §6.8, §6.1: whole secure-messaging commands ---------------------


def test_p5_6_8_pin_reload_84_24_00_01_des():
    # KS = 3DES_card(11223344 00000000) = a066128fad371112 (above); the PIN block of 123456.
    assert security.pin_block("123456") == h("123456")
    enc = des(KS_DES, h("03 123456 80000000"))
    assert enc == h("5ffbd0b085136b2f")
    # Lc = 8 + 4 = 0C; MAC over 84 24 00 01 0C || enc, padded 80 00 00.
    d1, d2 = h("842400010c5ffbd0"), h("b085136b2f800000")
    o1 = des(KS_DES, d1)
    assert o1 == h("e2887f12cf6b9db4")
    assert xor(o1, d2) == h("520d6c79e0eb9db4")
    o2 = des(KS_DES, h("520d6c79e0eb9db4"))
    assert o2 == h("0e3523aae9df8d4c")
    apdu = security.secure_apdu(DES, CARD_DES, R4, 0x84, 0x24, 0x00, 0x01, enc)
    assert apdu == h("842400010c 5ffbd0b085136b2f 0e3523aa")  # 17 bytes (reader API §6.4.2)


def test_p5_6_8_pin_reload_84_24_00_01_sm4():
    enc = sm4(KS_SM4, h("03 123456 80 0000000000000000000000"))
    assert enc == h("58d6beb382a87d5ee50f54c5287e31ab")
    # Lc = 16 + 4 = 14; D = 84 24 00 01 14 || enc (21 bytes), padded with 80 and 10 x 00.
    d1 = h("842400011458d6beb382a87d5ee50f54")
    d2 = h("c5287e31ab 80 00000000000000000000")
    o1 = sm4(KS_SM4, d1)
    assert o1 == h("edaf4806adcfb988f6486cad54fd537b")
    assert xor(o1, d2) == h("28873637064fb988f6486cad54fd537b")
    o2 = sm4(KS_SM4, h("28873637064fb988f6486cad54fd537b"))
    assert o2 == h("1b66b11cb1944c359460a0b8ded85ee9")
    assert xor(xor(xor(h("1b66b11c"), h("b1944c35")), h("9460a0b8")), h("ded85ee9")) == h(
        "e04a0378"
    )
    apdu = security.secure_apdu(SM4, CARD_SM4, R4, 0x84, 0x24, 0x00, 0x01, enc)
    assert apdu == h("8424000114 58d6beb382a87d5ee50f54c5287e31ab e04a0378")  # 25 bytes


def test_p5_6_8_pin_unblock_84_24_00_00_04_des():
    assert des(KS_DES, h("8424000004 800000")) == h("b31638cc1ac0f3c1")
    apdu = security.secure_apdu(DES, CARD_DES, R4, 0x84, 0x24, 0x00, 0x00, b"")
    assert apdu == h("8424000004 b31638cc")  # 9 bytes (reader API §7.4.2)


def test_p5_6_8_pin_unblock_84_24_00_00_04_sm4():
    o1 = sm4(KS_SM4, h("8424000004 80 00000000000000000000"))
    assert o1 == h("1d42e59d4f16c0b8c130e7f3d40050f9")
    assert xor(xor(xor(h("1d42e59d"), h("4f16c0b8")), h("c130e7f3")), h("d40050f9")) == h(
        "4764922f"
    )
    apdu = security.secure_apdu(SM4, CARD_SM4, R4, 0x84, 0x24, 0x00, 0x00, b"")
    assert apdu == h("8424000004 4764922f")


def test_p4_8_2_4_footnote_1_application_block_84_1e_00_01_04_des():
    assert des(KS_DES, h("841E000104 800000")) == h("bfc416b50aff2cb6")
    apdu = security.secure_apdu(DES, CARD_DES, R4, 0x84, 0x1E, 0x00, 0x01, b"")
    assert apdu == h("841E000104 bfc416b5")


def test_p4_8_2_4_footnote_2_application_block_84_1e_00_01_04_sm4():
    assert sm4(KS_SM4, h("841E000104 80 00000000000000000000")) == h(
        "ded20fcc2e4fb414bca43265a8683086"
    )
    apdu = security.secure_apdu(SM4, CARD_SM4, R4, 0x84, 0x1E, 0x00, 0x01, b"")
    assert apdu == h("841E000104 e451b93b")


# --- PIN coding (part 5 §6.8.3, §6.14: cn) ------------------------------------------------


def test_p5_6_14_pin_block_is_packed_bcd_f_padded():
    assert security.pin_block("123456") == h("123456")
    assert security.pin_block("12345") == h("12345F")
    assert security.pin_block("0000") == h("0000")
    assert security.pin_block("1234567890123456") == h("1234567890123456")


@pytest.mark.parametrize("pin", ["123", "12345678901234567", "12a456", "１２３４５６", "", " 1234"])
def test_p5_6_14_pin_block_rejects_without_echoing_digits(pin):
    with pytest.raises(SecurityInputError) as caught:
        security.pin_block(pin)
    assert not any(c.isdigit() for c in str(caught.value).replace("4 to 16", ""))


# --- error paths ----------------------------------------------------------------------------


def test_ssf33_is_unsupported_everywhere_with_one_sentence():
    key, r = bytes(16), bytes(8)
    calls = [
        lambda: security.block_size(SSF33),
        lambda: security.encrypt_block(SSF33, key, bytes(16)),
        lambda: security.decrypt_block(SSF33, key, bytes(16)),
        lambda: security.disperse(SSF33, key, r),
        lambda: security.disperse_chain(SSF33, key, [r]),
        lambda: security.card_key(SSF33, key, IDENT_511900, HIST_8_20),
        lambda: security.session_key(SSF33, key, r),
        lambda: security.mac_padding(SSF33, r),
        lambda: security.mac(SSF33, key, r),
        lambda: security.encrypt(SSF33, key, r),
        lambda: security.decrypt(SSF33, key, bytes(16)),
        lambda: security.auth_data(SSF33, key, r),
        lambda: security.authentication(SSF33, key, r, r),
        lambda: security.secure_apdu(SSF33, key, r, 0x84, 0x1E, 0, 1, b""),
    ]
    for call in calls:
        with pytest.raises(UnsupportedAlgorithmError) as caught:
            call()
        assert isinstance(caught.value, CardioError)
        message = str(caught.value)
        assert "SSF33" in message and message.count(". ") == 0


@pytest.mark.parametrize(
    ("alg", "key"),
    [(DES, bytes(7)), (DES, bytes(24)), (DES, b""), (SM4, bytes(8)), (SM4, bytes(32))],
)
def test_wrong_key_lengths(alg, key):
    secret = bytes(range(0xA0, 0xA0 + len(key)))
    for call in (
        lambda: security.encrypt_block(alg, secret, bytes(16)),
        lambda: security.decrypt_block(alg, secret, bytes(16)),
        lambda: security.disperse(alg, secret, bytes(8)),
        lambda: security.session_key(alg, secret, bytes(8)),
        lambda: security.authentication(alg, secret, bytes(8), bytes(8)),
        lambda: security.secure_apdu(alg, secret, bytes(8), 0x84, 0x1E, 0, 1, b""),
    ):
        with pytest.raises(SecurityInputError) as caught:
            call()
        assert secret.hex() not in str(caught.value).lower() or not secret


@pytest.mark.parametrize(("alg", "key"), [(DES, MK), (DES, bytes(4)), (SM4, bytes(8))])
def test_p4_8_4_session_keys_are_one_block(alg, key):
    # DES: MAC, encryption and authentication take the single-length session key only.
    for call in (
        lambda: security.mac(alg, key, b"x"),
        lambda: security.encrypt(alg, key, b"x"),
        lambda: security.decrypt(alg, key, bytes(16)),
        lambda: security.auth_data(alg, key, bytes(8)),
    ):
        with pytest.raises(SecurityInputError):
            call()


@pytest.mark.parametrize("factor", [b"", bytes(7), bytes(9), bytes(16)])
def test_p9_7_1_1_wrong_factor_length(factor):
    with pytest.raises(SecurityInputError):
        security.disperse(DES, MK, factor)
    with pytest.raises(SecurityInputError):
        security.disperse(SM4, MK, factor)


def test_p9_7_3_wrong_identification_code_or_historical_bytes():
    with pytest.raises(SecurityInputError):
        security.dispersion_factors(IDENT_511900[:15], HIST_8_20)
    with pytest.raises(SecurityInputError):
        security.dispersion_factors(h("5A1900") + IDENT_511900[3:], HIST_8_20)  # not BCD
    with pytest.raises(SecurityInputError):
        security.dispersion_factors(IDENT_511900, HIST_8_20[:12])


@pytest.mark.parametrize(("alg", "length"), [(DES, 0), (DES, 16), (DES, 3), (SM4, 12), (SM4, 0)])
def test_p4_8_4_wrong_random_length(alg, length):
    with pytest.raises(SecurityInputError):
        security.session_key(alg, MK, bytes(length))


def test_p4_9_1_raw_data_is_8_bytes():
    with pytest.raises(SecurityInputError):
        security.auth_data(DES, KS_DES, bytes(16))
    with pytest.raises(SecurityInputError):
        security.auth_data(SM4, KS_SM4, bytes(16))


def test_p4_8_3_2_ld_is_one_byte_and_at_least_1_for_sm4():
    with pytest.raises(SecurityInputError):
        security.encrypt(DES, KS_DES, bytes(256))
    with pytest.raises(SecurityInputError):
        security.encrypt(SM4, KS_SM4, b"")  # §8.3.3.2: LD >= 1 (docs/security.md A11)


def test_encrypt_block_takes_whole_blocks():
    with pytest.raises(SecurityInputError):
        security.encrypt_block(DES, KL, bytes(7))
    with pytest.raises(SecurityInputError):
        security.encrypt_block(SM4, MK, b"")


@pytest.mark.parametrize(
    ("alg", "ks", "block"),
    [
        (DES, KS_DES, h("0812345680000000")),  # LD 8 runs past the block
        (DES, KS_DES, h("0312345681000000")),  # padding not 80
        (DES, KS_DES, h("0312345680000100")),  # padding not 00
        (DES, KS_DES, h("0312345600000000")),  # no 80 at all
        (DES, KS_DES, h("0312345680000000 8000000000000000")),  # a whole extra block
        (SM4, KS_SM4, h("03123456 80 0000000000000000000000") + bytes(16)),
        (SM4, KS_SM4, h("00 80" + "00" * 14)),  # LD 0 (§8.3.3.2: LD >= 1)
        (SM4, KS_SM4, h("1f" + "00" * 15)),  # LD 31 in a 16-byte block
    ],
)
def test_p4_8_3_4_decrypt_rejects_bad_ld_or_padding(alg, ks, block):
    cryptogram = security.encrypt_block(alg, ks, block)
    with pytest.raises(CryptogramError):
        security.decrypt(alg, ks, cryptogram)


@pytest.mark.parametrize(("alg", "length"), [(DES, 0), (DES, 12), (SM4, 8), (SM4, 0)])
def test_p4_8_3_4_decrypt_rejects_partial_blocks(alg, length):
    ks = KS_DES if alg is DES else KS_SM4
    with pytest.raises(CryptogramError):
        security.decrypt(alg, ks, bytes(length))


def test_p4_8_5_secure_apdu_bounds():
    with pytest.raises(SecurityInputError):
        security.secure_apdu(DES, CARD_DES, R4, 0x184, 0x24, 0, 1, b"")
    with pytest.raises(SecurityInputError):
        security.secure_apdu(DES, CARD_DES, R4, 0x84, 0x24, 0, 1, bytes(252))
    assert len(security.secure_apdu(DES, CARD_DES, R4, 0x84, 0x24, 0, 1, bytes(251))) == 260


def test_errors_are_value_errors_and_cardio_errors():
    assert issubclass(SecurityInputError, ValueError)
    assert issubclass(SecurityInputError, CardioError)
    assert issubclass(CryptogramError, SecurityInputError)
    assert SecurityInputError.exit_code == UnsupportedAlgorithmError.exit_code == Exit.FAILED
