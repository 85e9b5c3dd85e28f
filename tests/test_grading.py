from hypothesis import given
from hypothesis import strategies as st

from l2s.grading import extract_answer, grade, is_equivalent, split_reasoning


def test_extraction_prefers_after_think():
    assert extract_answer("<think>\nAnswer: 1\n</think>\nAnswer: 2") == "2"
    assert extract_answer("<think>\nlooping forever") is None
    assert extract_answer(r"blah \boxed{\frac{3}{4}}") == r"\frac{3}{4}"
    assert extract_answer("answer: 17.") == "17"


def test_equivalence_math_verify_paths():
    assert is_equivalent(r"\frac{3}{4}", "0.75")
    assert is_equivalent("-5", "-5") and not is_equivalent("5", "-5")
    assert not is_equivalent("x+1", "x+2")
    assert not is_equivalent("not math at all", "3")


def test_r1_style_split():
    assert split_reasoning("a\nb\n</think>\n\nAnswer: 3", think_opened=True) == ("a\nb", "Answer: 3")


@given(st.integers(-(10**9), 10**9), st.integers(-(10**9), 10**9))
def test_integer_grading_is_exact(a, b):
    completion = f"<think>\nsteps\n</think>\nAnswer: {a}"
    assert grade([completion], [str(b)]) == [a == b]


def test_grading_off_main_thread():
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as ex:
        assert ex.submit(is_equivalent, r"\frac{1}{2}", "0.5").result() is True
